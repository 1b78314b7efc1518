// CPU per message of the auth checks alone (SPF at MAIL, DKIM/ARC/DMARC at DATA), driven as the
// stage runner drives them, on the bench corpus with the bench DNS stub's data (SPF with include,
// the DKIM key, DMARC p=reject): what the full-pipeline row spends in mailauth, without the rest.
// Rows: the DKIM-signed corpus, the same message unsigned, and SPF alone.
// Run: node bench/auth-checks.ts [iterations] [rounds] [signed|unsigned|spf]   (a few seconds; not
// part of bench/run.ts). With a row name only that row runs (for --cpu-prof). With
// AUTH_BENCH_BASE=DIR (a tree exported with `git archive REV src | tar -x -C DIR`, node_modules
// linked in), that tree's checks run too, rounds interleaved with ours: a same-process A/B.
// AUTH_BENCH_SEAL=1: with `auth.arc_seal` (a generated RSA key), the ARC seal signed as the
// finalize step would (each signer run over the header block).
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCorpus } from './lib/corpus.ts';
import { startDnsStub } from './lib/dns-stub.ts';
import { createAuthChecks } from '../src/checks/auth/auth-checks.ts';
import { authConfigSchema } from '../src/config/auth-schema.ts';
import { Resolver } from '../src/dns/resolver.ts';
import { Spool } from '../src/message/spool.ts';
import { detachedConnection, emptyEdits, type Check, type CheckOutput, type MessageView } from '../src/pipeline/check.ts';
import { FactSet, type FactValue } from '../src/pipeline/facts.ts';

const n = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const only = process.argv[4];
const dir = mkdtempSync(join(tmpdir(), 'mailgate-bench-auth-'));
const corpus = await buildCorpus(join(dir, 'corpus'));
const stub = await startDnsStub(dir, corpus.dkimPublicB64);

/** The message as the spool holds it after DATA (the wire form minus dot-stuffing). */
async function spooled(wire: Buffer): Promise<MessageView> {
  const s = new Spool({ maxBytes: 50 << 20, maxHeaderBytes: 1 << 20, maxLineBytes: 1 << 20, memoryBytes: 1 << 20, tmpDir: dir }, true);
  const unstuffed = Buffer.from(wire.toString('latin1').replace(/\r\n\.\./g, '\r\n.'), 'latin1');
  await new Promise<void>((resolve, reject) => s.end(unstuffed, (err?: Error | null) => (err ? reject(err) : resolve())));
  return s;
}
const signed = await spooled(corpus.smallWire);
const unsignedWire = Buffer.from(corpus.smallWire.toString('latin1').replace(/^DKIM-Signature:.*\r\n(?:[ \t].*\r\n)*/i, ''), 'latin1');
const unsigned = await spooled(unsignedWire);

const sealing =
  process.env.AUTH_BENCH_SEAL === '1'
    ? {
        arc_seal: {
          domain: 'mx.bench.test',
          selector: 'arc',
          key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        },
      }
    : {};

type Factory = typeof createAuthChecks;
interface Target {
  name: string;
  spf: Check;
  data: Check;
}
function target(name: string, factory: Factory, ResolverClass: typeof Resolver): Target {
  const resolver = new ResolverClass({ servers: [`127.0.0.1:${stub.port}`], timeoutMs: 2000 });
  const [spf, data] = factory({ hostname: 'mx.bench.test', auth: authConfigSchema.parse(sealing) }, { dns: resolver }) as [Check, Check];
  return { name, spf, data };
}
const targets: Target[] = [target('this tree', createAuthChecks, Resolver)];
const base = process.env.AUTH_BENCH_BASE;
if (base) {
  const m = (await import(join(base, 'src/checks/auth/auth-checks.ts'))) as { createAuthChecks: Factory };
  const r = (await import(join(base, 'src/dns/resolver.ts'))) as { Resolver: typeof Resolver };
  targets.push(target(`base (${base})`, m.createAuthChecks, r.Resolver));
}

const envelope: Record<string, FactValue> = {
  'client.ip': '127.0.0.1',
  'helo.name': 'client.example.test',
  'mail.from': 'sender@example.test',
  'mail.null_sender': false,
};

async function run(check: Check, stage: 'mail' | 'data', facts: FactSet, message?: MessageView): Promise<CheckOutput> {
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  await check.run({ stage, connection: detachedConnection(), facts, signal: new AbortController().signal, ...(message ? { message } : {}) }, out);
  for (const [k, v] of out.facts.entries()) facts.set(k, v);
  if (message) for (const s of out.edits.signers) await s.sign(message.headerBytes);
  return out;
}

async function oneMessage(t: Target, message: MessageView | undefined): Promise<FactSet> {
  const facts = new FactSet(Object.entries(envelope));
  await run(t.spf, 'mail', facts);
  if (message) await run(t.data, 'data', facts, message);
  return facts;
}

async function cpuPer(label: string, message: MessageView | undefined): Promise<void> {
  const per = new Map<Target, number[]>(targets.map((t) => [t, []]));
  // wall time too: above the CPU time, a message waited (DNS, a timer, the event loop)
  const wall = new Map<Target, number[]>(targets.map((t) => [t, []]));
  for (const t of targets) {
    for (let i = 0; i < Math.min(300, n); i++) await oneMessage(t, message);
  }
  for (let r = 0; r < rounds; r++) {
    // alternate the order, so neither target always pays for the garbage the other left
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      for (let i = 0; i < n; i++) await oneMessage(t, message);
      const c = process.cpuUsage(c0);
      wall.get(t)?.push(((performance.now() - w0) * 1000) / n);
      per.get(t)?.push((c.user + c.system) / n);
    }
  }
  for (const t of targets) {
    const f = await oneMessage(t, message);
    const summary = ['spf.result', 'dkim.result', 'dmarc.result', 'arc.result'].map((k) => `${k.split('.')[0]}=${String(f.get(k) ?? '-')}`).join(' ');
    const xs = per.get(t) ?? [];
    const sorted = [...xs].sort((a, b) => a - b);
    const median = sorted[Math.floor(xs.length / 2)] ?? NaN;
    const walls = [...(wall.get(t) ?? [])].sort((a, b) => a - b);
    // min as well: on a shared machine other work only ever adds CPU time (cache, SMT siblings)
    console.log(
      `${label}, ${t.name}: min ${(sorted[0] ?? NaN).toFixed(0)}, median ${median.toFixed(0)} µs CPU per message, wall min ${(walls[0] ?? NaN).toFixed(0)} (${xs.length} rounds of ${n}: ${xs.map((x) => x.toFixed(0)).join(' ')}; ${summary})`,
    );
  }
}

try {
  if (!only || only === 'signed') await cpuPer('signed corpus (SPF + DKIM/ARC/DMARC)', signed);
  if (!only || only === 'unsigned') await cpuPer('unsigned corpus (SPF + DKIM/ARC/DMARC)', unsigned);
  if (!only || only === 'spf') await cpuPer('SPF only', undefined);
} finally {
  await stub.svc.stop();
}
