// Faults survived, nothing lost (issue 14): messages flow from several clients through a mailgate
// child process to a private Postfix while faults are injected — mailgate SIGKILLed and restarted
// at random moments, the backend stopped for a while, and a fault proxy in front of Postfix that
// refuses, resets mid-DATA, resets or stalls after the final dot. A reconciler then compares what
// each client was told with the Maildir and the quarantine: every 250 is there exactly once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { closedPort, loopbackDns } from '../helpers/gateway.ts';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Deterministic randomness, so a failing run can be repeated (MAILGATE_FAULT_SEED). */
let seed = Number(process.env.MAILGATE_FAULT_SEED ?? 14);
function rand(): number {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
}

type ProxyMode = 'clean' | 'refuse' | 'reset-mid-data' | 'reset-after-dot' | 'stall-after-dot';

/** A TCP proxy to the backend that misbehaves per connection; counts the faults it injected. */
async function faultProxy(upstreamPort: number, faultRate: number) {
  const injected: Record<ProxyMode, number> = { clean: 0, refuse: 0, 'reset-mid-data': 0, 'reset-after-dot': 0, 'stall-after-dot': 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    sockets.add(down);
    down.on('error', () => undefined);
    const r = rand();
    const mode: ProxyMode =
      r >= faultRate ? 'clean' : (['refuse', 'reset-mid-data', 'reset-after-dot', 'stall-after-dot'] as const)[Math.floor((r / faultRate) * 4)] ?? 'clean';
    injected[mode]++;
    if (mode === 'refuse') return void down.destroy();
    const up = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(up);
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    let inData = false;
    let tail = '';
    let stalled = false;
    up.on('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('354')) inData = true;
      if (!stalled) down.write(d);
    });
    down.on('data', (d: Buffer) => {
      const s = tail + d.toString('latin1');
      tail = s.slice(-4);
      if (inData && mode === 'reset-mid-data' && s.length > 20) {
        up.write(d.subarray(0, Math.floor(d.length / 2)));
        up.destroy();
        down.destroy();
        return;
      }
      up.write(d);
      if (inData && s.includes('\r\n.\r\n')) {
        inData = false;
        // The dot reached the backend, which will queue the message: the client must not get a
        // 250 from mailgate, and a retry would duplicate it (README, item 12).
        if (mode === 'reset-after-dot') setTimeout(() => down.destroy(), 5);
        if (mode === 'stall-after-dot') stalled = true;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    injected,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/** mailgate as a child process on a fixed port; kill -9 and restart at will. */
class GatewayProcess {
  child: ChildProcess | undefined;
  kills = 0;
  readonly cfg: string;
  readonly port: number;
  constructor(cfg: string, port: number) {
    this.cfg = cfg;
    this.port = port;
  }
  async start(): Promise<void> {
    this.child = spawn(process.execPath, [join(ROOT, 'src/cli/main.ts'), 'serve', '--config', this.cfg], { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
    this.child.stderr?.resume();
    for (let i = 0; i < 200; i++) {
      if (await listening(this.port)) return;
      await sleep(50);
    }
    throw new Error('mailgate did not start');
  }
  kill(): void {
    this.child?.kill('SIGKILL');
    this.kills++;
  }
  async exited(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((r) => c.once('exit', () => r()));
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Refusal replies by command and text, for the diagnostics. */
const tempfailTexts = new Map<string, number>();

type Outcome = 'accepted' | 'tempfail' | 'reject' | 'dropped' | 'refused';

/** One message on its own connection; what the client was told. */
async function sendOne(port: number, tok: string): Promise<Outcome> {
  let c: RawSmtp;
  try {
    c = await RawSmtp.connect(port);
  } catch {
    return 'refused';
  }
  try {
    const steps = ['EHLO client.example.net', 'MAIL FROM:<sender@client.example.net>', 'RCPT TO:<alice@example.test>', 'DATA'];
    const g = await c.read(5000);
    if (!g) return 'dropped';
    if (g.code !== 220) return g.code >= 500 ? 'reject' : 'tempfail';
    for (const s of steps) {
      const r = await c.cmd(s, 10_000);
      if (!r) return 'dropped';
      if (r.code >= 400) {
        tempfailTexts.set(`${s.split(' ')[0]} ${r.code} ${r.text.slice(0, 60)}`, (tempfailTexts.get(`${s.split(' ')[0]} ${r.code} ${r.text.slice(0, 60)}`) ?? 0) + 1);
        return r.code >= 500 ? 'reject' : 'tempfail';
      }
    }
    c.write(
      `From: <sender@client.example.net>\r\nTo: <alice@example.test>\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@client.example.net>\r\n\r\n` +
        `${'body line\r\n'.repeat(Math.floor(rand() * 200))}.\r\n`,
    );
    const end = await c.read(20_000);
    if (!end) return 'dropped';
    if (end.code >= 300) tempfailTexts.set(`DOT ${end.code} ${end.text.slice(0, 60)}`, (tempfailTexts.get(`DOT ${end.code} ${end.text.slice(0, 60)}`) ?? 0) + 1);
    return end.code < 300 ? 'accepted' : end.code < 500 ? 'tempfail' : 'reject';
  } catch {
    return 'dropped';
  } finally {
    c.close();
  }
}

/** Tokens in every delivered message and quarantined .eml, with their counts. */
function deliveredTokens(dirs: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of dirs) {
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) {
      if (f.endsWith('.json')) continue;
      const text = readFileSync(join(d, f), 'latin1');
      for (const m of text.matchAll(/^Subject: (fault-\d+)\s*$/gm)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    }
  }
  return counts;
}

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('faults: SIGKILL, backend down, resets and stalls — every 250 is delivered exactly once', async (t) => {
  const pf: PostfixInstance = await startPostfix();
  cleanups.push(() => pf.destroy());
  const proxy = await faultProxy(pf.port, 0.25);
  cleanups.push(() => proxy.close());
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-faults-'));
  mkdirSync(join(dir, 'rules'));
  const port = await closedPort();
  const cfg = join(dir, 'mailgate.yaml');
  writeFileSync(
    cfg,
    [
      'hostname: mx.example.test',
      `listen: [{ host: 127.0.0.1, port: ${port} }]`,
      'domains: [example.test]',
      `backend: { host: 127.0.0.1, port: ${proxy.port}, connect_timeout_ms: 1000, command_timeout_ms: 2000, data_timeout_ms: 1500, write_timeout_ms: 1500 }`,
      'admin: false',
      `rules: ${dir}/rules`,
      `quarantine: { dir: ${dir}/quarantine }`,
      `spool_dir: ${dir}/spool`,
      'checks: { disabled: [spf, dkim-arc-dmarc, dnsbl, greylist, fcrdns, helo-sanity] }',
      'log: { level: silent }',
      `dns: { servers: ["${await loopbackDns()}"] }`,
      'capture: false',
    ].join('\n') + '\n',
  );
  const gw = new GatewayProcess(cfg, port);
  cleanups.push(() => gw.kill());
  await gw.start();

  // The clients send until the chaos schedule is over: ROUNDS faults on the gateway or the backend.
  const ROUNDS = Number(process.env.MAILGATE_FAULT_ROUNDS ?? 8);
  const CLIENTS = 3;
  const outcomes = new Map<string, Outcome>();
  let next = 0;
  let done = false;
  const clients = Array.from({ length: CLIENTS }, async () => {
    while (!done) {
      const tok = `fault-${next++}`;
      const o = await sendOne(port, tok);
      outcomes.set(tok, o);
      if (o === 'refused') await sleep(100); // mailgate is restarting
      else if (o !== 'accepted') await sleep(50); // a backend fault: like a real client, do not hammer
    }
  });
  let backendStops = 0;
  for (let round = 0; round < ROUNDS; round++) {
    await sleep(400 + rand() * 800);
    if (round % 4 !== 3) {
      gw.kill();
      await gw.exited();
      await gw.start();
    } else {
      pf.stopDaemon();
      backendStops++;
      await sleep(300 + rand() * 500);
      await pf.start();
    }
  }
  await sleep(500);
  done = true;
  await Promise.all(clients);

  // Let Postfix deliver what it queued.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && pf.queue().length > 0) await sleep(200);
  await sleep(500);
  const counts = deliveredTokens([join(pf.mailBase, 'alice', 'new'), join(pf.mailBase, 'alice', 'cur'), join(dir, 'quarantine')]);

  const figures = { sent: outcomes.size, accepted: 0, lost: 0, duplicated: 0, deliveredWithout250: 0, tempfail: 0, reject: 0, dropped: 0, refused: 0 };
  const lost: string[] = [];
  for (const [tok, o] of outcomes) {
    const n = counts.get(tok) ?? 0;
    if (o === 'accepted') {
      figures.accepted++;
      if (n === 0) lost.push(tok);
      if (n > 1) figures.duplicated++;
    } else {
      figures[o]++;
      if (n > 0) figures.deliveredWithout250++;
      if (n > 1) figures.duplicated++;
    }
  }
  figures.lost = lost.length;
  t.diagnostic(`refusals ${JSON.stringify([...tempfailTexts])}`);
  t.diagnostic(`figures ${JSON.stringify({ ...figures, sigkills: gw.kills, backendStops, proxyFaults: proxy.injected })}`);
  assert.equal(figures.lost, 0, `told 250 but not delivered: ${lost.join(', ')}`);
  assert.equal(figures.duplicated, 0);
  assert.ok(figures.accepted >= 100, `too few accepted to mean anything: ${JSON.stringify(figures)}`);
  assert.ok(gw.kills > 0);
  // Every message got an answer: accepted, refused, tempfailed, or a dropped connection.
  assert.equal(figures.accepted + figures.tempfail + figures.reject + figures.dropped + figures.refused, figures.sent);
  // The spool was cleaned of the killed processes' temp files.
  gw.kill();
  await gw.exited();
  await gw.start();
  assert.deepEqual(readdirSync(join(dir, 'spool')).filter((f) => f.startsWith('spool-')), []);
});
