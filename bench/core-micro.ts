// Micro-bench of the transaction core alone: a gateway built from a bench config (the shipped
// example config with every check disabled: the relay leg, rules engine, capture, log line), its
// ConnectionCore driven directly for many messages — connect, EHLO, MAIL, RCPT, DATA (the bench
// corpus message), disconnect — with an instant in-process backend (`--backend null`) or the
// real backend client against a local smtp-sink (`--backend sink`). Prints CPU µs per message of
// this process, so per-message core costs can be compared without the load generator's noise.
// `--alloc`: instead, bytes allocated per message by function (V8's sampling heap profiler,
// counting objects already collected too), the figure GC time follows; with `--live` only what is
// still alive at the end (what the scavenges copy and promote).
// Usage: node bench/core-micro.ts [--messages N] [--rounds R] [--backend null|sink] [--config FILE] [--alloc]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { Readable } from 'node:stream';
import { parse } from 'yaml';
import pino from 'pino';
import { configSchema } from '../src/config/schema.ts';
import { createGateway } from '../src/gateway.ts';
import type { Backend, BackendReply } from '../src/pipeline/delivery.ts';
import { ConnectionCore } from '../src/pipeline/transaction.ts';
import { Spool, spoolFrom } from '../src/message/spool.ts';
import { ALL_CHECKS } from './rows/throughput.ts';

const args = process.argv.slice(2);
const opt = (n: string, d: string): string => {
  const i = args.indexOf(n);
  return i >= 0 ? (args[i + 1] ?? d) : d;
};
const messages = Number(opt('--messages', '1000'));
const rounds = Number(opt('--rounds', '15'));
const backendKind = opt('--backend', 'null');
const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'mailgate-core-micro-'));
const corpus = join(root, 'bench', 'work', 'corpus', 'msg-5k.eml');
let message: Buffer;
try {
  // On disk with LF line endings; smtp-source sends it with CRLF, as the spool expects.
  message = Buffer.from(readFileSync(corpus, 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
} catch {
  process.stderr.write(`no ${corpus}: run the bench once (npm run bench -- --only limit --quick) to build the corpus\n`);
  process.exit(2);
}

let sink: ReturnType<typeof spawn> | undefined;
let sinkPort = 1;
if (backendKind === 'sink') {
  sinkPort = 20000 + Math.floor(Math.random() * 20000);
  const asRoot = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const bin = execFileSync('bash', ['-c', 'command -v smtp-sink || echo /usr/sbin/smtp-sink'], { encoding: 'utf8' }).trim();
  sink = spawn(bin, [...asRoot, '-c', `127.0.0.1:${sinkPort}`, '100'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
}

const example = parse(readFileSync(join(root, 'mailgate.example.yaml'), 'utf8')) as Record<string, unknown>;
const extra = opt('--config', '') ? (parse(readFileSync(opt('--config', ''), 'utf8')) as Record<string, unknown>) : {};
const config = configSchema.parse({
  ...example,
  hostname: 'mailgate.bench.test',
  listen: [{ host: '127.0.0.1', port: 0 }],
  domains: ['example.test'],
  rules: join(root, 'rules'),
  quarantine: { dir: join(work, 'quarantine') },
  admin: false,
  dns: { servers: ['127.0.0.1:9'], timeout_ms: 2000 },
  backend: { host: '127.0.0.1', port: sinkPort },
  checks: { disabled: ALL_CHECKS },
  ...extra,
});
// The log line goes to a file, as in the bench (stdout redirected).
const logger = pino({ level: config.log.level, base: { svc: 'mailgate' } }, pino.destination({ dest: join(work, 'mailgate.log'), sync: true }));
const gw = await createGateway({ config, logger, admin: false });
const rt = gw.runtime;

const ok = (enhanced: string, text: string): BackendReply => ({ code: 250, enhanced, lines: [text] });
const nullBackend: Backend = {
  description: 'null',
  link: () => ({
    mail: async () => ok('2.1.0', 'Ok'),
    rcpt: async () => ok('2.1.5', 'Ok'),
    data: async (parts) => {
      for (const p of parts) if (!Buffer.isBuffer(p)) for await (const _ of p) void _;
      return ok('2.0.0', 'Ok: queued as X');
    },
    abort: async () => undefined,
    release: () => undefined,
  }),
  probe: async () => ({ ok: true, detail: 'null' }),
  close: () => undefined,
};
if (backendKind === 'null') rt.backend = nullBackend;

const lim = rt.config.limits;
async function one(i: number): Promise<void> {
  const core = new ConnectionCore(rt, { id: `c${i}`, ip: '127.0.0.1', port: 40000 + (i % 20000), localPort: 25, proxied: false }, 'smtp');
  await core.connect();
  await core.heloStage('client.example.test', true);
  const m = await core.mail('sender@example.test', {});
  if (m.code !== 250) throw new Error(`MAIL: ${m.toString()}`);
  const r = await core.rcpt('rcpt@example.test', {});
  if (r.code !== 250) throw new Error(`RCPT: ${r.toString()}`);
  const spool = new Spool(
    {
      maxBytes: lim.max_message_bytes,
      maxHeaderBytes: lim.max_header_bytes,
      maxLineBytes: lim.max_line_bytes,
      memoryBytes: lim.memory_spool_bytes,
      tmpDir: rt.spoolDir,
    },
    true,
  );
  await spoolFrom(Readable.from([message]), spool);
  const d = await core.data(spool);
  spool.release();
  if (d.reply.code !== 250) throw new Error(`DATA: ${d.reply.toString()}`);
  await core.disconnect();
}

// 20 concurrent "sessions", as the throughput rows.
async function batch(n: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < n) await one(next++);
    }),
  );
}

await batch(Math.min(1000, messages));
if (args.includes('--alloc')) {
  await allocations();
  process.exit(0);
}
const results: number[] = [];
const all0 = process.cpuUsage();
for (let r = 0; r < rounds; r++) {
  const c0 = process.cpuUsage();
  await batch(messages);
  const c = process.cpuUsage(c0);
  results.push((c.user + c.system) / messages);
}
const all = process.cpuUsage(all0);
results.sort((a, b) => a - b);
// The mean over every round includes the major GCs that only some rounds get; min and median
// show how noisy the machine was.
process.stdout.write(
  `${backendKind} backend, ${messages} messages × ${rounds}: CPU µs/msg mean ${((all.user + all.system) / (messages * rounds)).toFixed(1)}, median ${results[Math.floor(results.length / 2)]?.toFixed(1)} (min ${results[0]?.toFixed(1)}, max ${results[results.length - 1]?.toFixed(1)})\n`,
);
await gw.stop(100);
sink?.kill();
rmSync(work, { recursive: true, force: true });

interface SampleNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  id: number;
  children: SampleNode[];
}

/** Bytes allocated per message by function, over `messages` messages. */
async function allocations(): Promise<void> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: !args.includes('--live'),
    includeObjectsCollectedByMinorGC: !args.includes('--live'),
  });
  await batch(messages);
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
    profile: { head: SampleNode; samples: Array<{ size: number; nodeId: number }> };
  };
  const byId = new Map<number, SampleNode>();
  const walk = (n: SampleNode) => {
    byId.set(n.id, n);
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const self = new Map<string, number>();
  let total = 0;
  for (const s of profile.samples) {
    const n = byId.get(s.nodeId);
    if (!n) continue;
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(src|node_modules)\//, '$1/').replace(/^file:\/\/.*\/bench\//, 'bench/')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + s.size);
    total += s.size;
  }
  process.stdout.write(`allocated ≈ ${(total / messages / 1024).toFixed(1)} KiB per message (${messages} messages)\n`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(opt('--top', '40')))) {
    process.stdout.write(`${(v / messages).toFixed(0).padStart(8)} B/msg  ${k}\n`);
  }
  await gw.stop(100);
  sink?.kill();
  rmSync(work, { recursive: true, force: true });
}
