// Quick measurement of the content checks' cost (docs/content.md quotes it): CPU per bench
// message (~5 KB, 3 small attachments) for the MIME walk + attachment facts, the same for the
// mailparser streaming parser, the shipped content checks themselves (mime-walk, attachments,
// urls, body-text: run as the stage runner runs them, outside the gateway), and RSS growth
// walking a 50 MB message with a 40 MB attachment.
// Run: node bench/content-walk.ts [iterations]   (a few seconds; not part of bench/run.ts yet)
import { createReadStream } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { MailParser } from 'mailparser';
import { smallMessage, bigMessage } from './lib/corpus.ts';
import { walkMime } from '../src/message/mime-walk.ts';
import { analyseAttachments } from '../src/checks/content/attachments.ts';
import { createContentChecks } from '../src/checks/content/content-checks.ts';
import { createWalkBodyTextCheck } from '../src/checks/content/body-text-walk.ts';
import { contentConfigSchema } from '../src/config/content-schema.ts';
import { emptyEdits, detachedConnection, type CheckOutput } from '../src/pipeline/check.ts';
import { FactSet } from '../src/pipeline/facts.ts';
import { messageView } from '../test/helpers/content-fixtures.ts';

const n = Number(process.argv[2] ?? 2000);
const small = Buffer.from(smallMessage().replace(/\n/g, '\r\n'));

async function cpuPer(label: string, f: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < Math.min(200, n); i++) await f();
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  const wall = (performance.now() - w0) / n;
  const c = process.cpuUsage(c0);
  // wall above CPU: a message waited (a timer, the event loop)
  console.log(`${label}: ${((c.user + c.system) / 1000 / n).toFixed(3)} ms CPU per message, wall ${wall.toFixed(3)} (${small.length} bytes, n=${n})`);
}

async function parseWithMailparser(buf: Buffer): Promise<void> {
  const p = new MailParser({ skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true });
  p.on('data', (d: { type: string; content?: NodeJS.ReadableStream; release?: () => void }) => {
    if (d.type === 'attachment') {
      d.content?.on('data', () => undefined);
      d.content?.on('end', () => d.release?.());
    }
  });
  const done = new Promise((r) => p.on('end', r));
  p.end(buf);
  await done;
}

await cpuPer('mime walk only', () => walkMime([small]));
await cpuPer('mime walk + attachment facts', async () => analyseAttachments(await walkMime([small])));
await cpuPer('mailparser streaming (for comparison)', () => parseWithMailparser(small));

// The shipped data-stage content checks (default config; body text computed as if a rule read it).
const contentChecks = [...createContentChecks(contentConfigSchema.parse({}), {}), createWalkBodyTextCheck({ always: true })].filter((c) =>
  c.stages.includes('data'),
);
async function runChecks(only: string | undefined): Promise<void> {
  const message = messageView(small);
  const facts = new FactSet();
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  for (const c of contentChecks) {
    if (only && c.name !== only && c.name !== 'mime-walk') continue;
    await c.run({ stage: 'data', connection: detachedConnection(), facts, message, signal: new AbortController().signal }, out);
    for (const [k, v] of [...out.facts.entries()]) {
      facts.set(k, v);
      out.facts.delete(k);
    }
  }
}
await cpuPer(`content checks (${contentChecks.map((c) => c.name).join(', ')})`, () => runChecks(undefined));
for (const only of ['mime-walk', 'attachments', 'urls', 'body-text'])
  await cpuPer(`  ${only}${only === 'mime-walk' ? '' : ' + mime-walk'}`, () => runChecks(only));

const file = await bigMessage(mkdtempSync(join(tmpdir(), 'mailgate-bench-content-')), 50 * 1024 * 1024);
globalThis.gc?.();
const rss0 = process.memoryUsage().rss;
let peak = rss0;
const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
const c0 = process.cpuUsage();
const w = await walkMime(createReadStream(file, { highWaterMark: 64 * 1024 }) as Readable);
const r = await analyseAttachments(w);
const c = process.cpuUsage(c0);
clearInterval(timer);
peak = Math.max(peak, process.memoryUsage().rss);
console.log(
  `50 MB message, 40 MB attachment: RSS growth ${((peak - rss0) / 1024 / 1024).toFixed(1)} MiB, CPU ${((c.user + c.system) / 1000).toFixed(0)} ms, parts ${w.parts.length}, attachment ${r.files[0]?.name} ${r.files[0]?.size} bytes`,
);
