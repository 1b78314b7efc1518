// The bench's warm burst before each interleaved run (bench/rows/throughput.ts, docs/bench.md):
// its size, and BENCH_PRE_RUN_MSGS, which sets it or turns it off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preRunMsgs } from '../../bench/rows/throughput.ts';

const cases: Array<{ desc: string; sessions: number; run: number; env: string | undefined; expected: number }> = [
  { desc: 'a tenth of the run', sessions: 20, run: 3000, env: undefined, expected: 300 },
  { desc: 'at least 5 a session', sessions: 20, run: 400, env: undefined, expected: 100 },
  { desc: 'one session, small run', sessions: 1, run: 20, env: undefined, expected: 5 },
  { desc: 'empty variable: the default', sessions: 1, run: 1000, env: '', expected: 100 },
  { desc: 'set', sessions: 20, run: 3000, env: '50', expected: 50 },
  { desc: 'off', sessions: 20, run: 3000, env: '0', expected: 0 },
];

for (const c of cases) {
  test(`preRunMsgs: ${c.desc}`, () => {
    assert.equal(preRunMsgs(c.sessions, c.run, c.env), c.expected);
  });
}

test('preRunMsgs: a value that is not a whole number of messages is refused, naming the variable', () => {
  for (const bad of ['-1', '1.5', 'ten']) assert.throws(() => preRunMsgs(20, 100, bad), /BENCH_PRE_RUN_MSGS: a whole number/);
});
