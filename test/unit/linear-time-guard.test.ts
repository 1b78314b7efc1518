// Guard for issue 14 item 1: each parser that sees message data or operator patterns is fed the
// worst case it accepts while the event loop delay is measured; a super-linear parser stalls the
// loop for seconds (the regexes these replaced took 14–25 s), a linear one for milliseconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { extractAddresses, MAX_ADDRESS_LIST_CHARS } from '../../src/pipeline/message-facts.ts';
import { htmlToText } from '../../src/message/html-text.ts';
import { compileGlob, parseRegex } from '../../src/message/text-patterns.ts';
import { parseHeaderBlock } from '../../src/message/headers.ts';

/** Generous: a linear parse of these inputs takes well under 50 ms on a loaded 2-core machine. */
const MAX_DELAY_MS = 200;
const K64 = 64 * 1024;

/** Runs `fn` on a timer tick while the loop delay is recorded; returns the worst delay in ms. */
async function worstDelayMs(fn: () => void): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  await new Promise((r) => setTimeout(r, 20));
  await new Promise<void>((r) =>
    setTimeout(() => {
      fn();
      r();
    }, 5),
  );
  await new Promise((r) => setTimeout(r, 30));
  h.disable();
  return h.max / 1e6;
}

const cases: Array<{ desc: string; run: () => void }> = [
  {
    desc: 'From: 64 KB without "@", four times',
    run: () => {
      for (let i = 0; i < 4; i++) extractAddresses('a'.repeat(K64));
    },
  },
  { desc: 'From: 64 KB of "<"', run: () => extractAddresses('<'.repeat(K64)) },
  { desc: 'From: 64 KB of "a:"', run: () => extractAddresses('a:'.repeat(K64 / 2)) },
  { desc: 'From: 64 KB of "(("', run: () => extractAddresses('('.repeat(K64)) },
  { desc: 'From: 64 KB of "a@" pairs', run: () => extractAddresses('@a'.repeat(K64 / 2)) },
  { desc: 'From: 64 KB of \\" inside quotes', run: () => extractAddresses('"' + '\\"'.repeat(K64 / 2)) },
  { desc: 'HTML: 281 KB <script body, no close', run: () => htmlToText('<script' + 'a'.repeat(281 * 1024), 1_000_000) },
  { desc: 'HTML: 300 KB of "<script>"', run: () => htmlToText('<script>'.repeat(40_000), 1_000_000) },
  { desc: 'HTML: 300 KB of "<" without ">"', run: () => htmlToText('<'.repeat(300_000), 1_000_000) },
  { desc: 'HTML: 300 KB of "&"', run: () => htmlToText('&'.repeat(300_000), 1_000_000) },
  { desc: 'HTML: 300 KB of "</"', run: () => htmlToText('<script>' + '</'.repeat(150_000), 1_000_000) },
  { desc: 'HTML: 300 KB of whitespace and newlines', run: () => htmlToText(' \n'.repeat(150_000) + 'x', 1_000_000) },
  { desc: 'glob *a*a*a*a*a*b on 64 KB of "a"', run: () => compileGlob('*a*a*a*a*a*b').test('a'.repeat(K64)) },
  { desc: 'glob x-*-*-*-*-*z on a 64 KB header name', run: () => compileGlob('x-*-*-*-*-*z').test('x-' + '-'.repeat(K64)) },
  { desc: 'regex /^(a+)+$/ on 29 characters', run: () => parseRegex('/^(a+)+$/').test('a'.repeat(28) + '!') },
  { desc: 'regex /^(a+)+$/ on 64 KB', run: () => parseRegex('/^(a+)+$/').test('a'.repeat(K64) + '!') },
  { desc: 'regex /(.*a){12}/ on 64 KB', run: () => parseRegex('/(.*a){12}/').test('a'.repeat(K64)) },
  { desc: 'header block: 256 KB of folded lines', run: () => parseHeaderBlock(Buffer.from('X: a\r\n' + ' b\r\n'.repeat(60_000) + '\r\n')) },
  { desc: 'header block: 256 KB of nameless lines', run: () => parseHeaderBlock(Buffer.from('x\r\n'.repeat(85_000) + '\r\n')) },
];

for (const c of cases) {
  test(`event loop stays responsive: ${c.desc}`, async () => {
    const ms = await worstDelayMs(c.run);
    assert.ok(ms < MAX_DELAY_MS, `event loop blocked for ${ms.toFixed(0)} ms (limit ${MAX_DELAY_MS} ms)`);
  });
}

test('the From parser only looks at the first MAX_ADDRESS_LIST_CHARS characters', () => {
  assert.deepEqual(extractAddresses('x'.repeat(MAX_ADDRESS_LIST_CHARS) + ' late@x.example'), []);
});
