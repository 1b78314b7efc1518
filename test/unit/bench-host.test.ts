// The bench's host check: a run whose 20-session limit row moved, or whose "others" rose, is
// flagged as not fit for a run of record (bench/lib/report.ts hostProblems), in the printed report
// and in the results file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostProblems, render } from '../../bench/lib/report.ts';
import type { RunSample, ThroughputRow } from '../../bench/lib/types.ts';

function run(msgPerS: number, otherBusyPct = 2): RunSample {
  return {
    msgs: 1000,
    wallS: 1000 / msgPerS,
    msgPerS,
    cpuS: 1,
    sinkCpuS: 0.2,
    sourceCpuS: 0.3,
    machineBusyPct: 60,
    otherBusyPct,
    delivered: 1000,
    problems: [],
  };
}

function row(target: string, sessions: number, runs: RunSample[]): ThroughputRow {
  const id = `${target}-s${sessions}`;
  return {
    kind: 'throughput',
    id,
    target,
    label: id,
    sessions,
    workers: 1,
    msgPerS: runs[0]?.msgPerS ?? null,
    cpuPer1kS: 1,
    peakRssMiB: 100,
    runs,
    ok: true,
    notes: [],
  };
}

test('a steady host: nothing to say, and no Host section', () => {
  const rows = [row('limit', 20, [run(4859), run(4933), run(5605)]), row('mailgate', 20, [run(200, 8), run(259), run(260)])];
  assert.deepEqual(hostProblems(rows), []);
  assert.doesNotMatch(render(rows, [], []), /Host: not steady/);
});

test('the 20-session limit moving more than 1.35× between runs is reported, with the figures', () => {
  const rows = [row('limit', 20, [run(3642), run(1874), run(1528)])];
  assert.deepEqual(hostProblems(rows), ['limit-s20: the limit moved 3642 → 1528 msg/s across its runs (2.38×, steady is ≤ 1.35×)']);
  assert.match(render(rows, [], []), /Host: not steady .*not a run of record\n {2}limit-s20: the limit moved 3642 → 1528/);
});

test('the one-session limit may move (it is latency-bound): not reported', () => {
  assert.deepEqual(hostProblems([row('limit', 1, [run(2754), run(2034), run(1758)])]), []);
});

test('others above 15% of the machine in any run is reported once, with the worst figure', () => {
  const rows = [row('limit', 20, [run(4900, 7), run(4950, 4)]), row('haraka', 20, [run(150, 29), run(152, 19)])];
  assert.deepEqual(hostProblems(rows), ['others used up to 29% of the machine in a run (quiet is ≤ 15%)']);
});
