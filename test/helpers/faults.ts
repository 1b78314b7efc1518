// Fault-injection tools shared by the reconciler test and the soak: a TCP proxy in front of the
// backend that misbehaves per connection, mailgate as a child process to SIGKILL and restart, a
// one-message SMTP client that reports what it was told, and a count of delivered tokens.
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawSmtp } from './smtp-client.ts';
import { spawnGateway, waitListening, type GatewayChild } from './gateway-child.ts';

export const ROOT = join(import.meta.dirname, '..', '..');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Deterministic randomness, so a failing run can be repeated (MAILGATE_FAULT_SEED). */
let seed = Number(process.env.MAILGATE_FAULT_SEED ?? 14);
export function rand(): number {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
}

export type ProxyMode = 'clean' | 'refuse' | 'reset-mid-data' | 'reset-after-dot' | 'stall-after-dot';

/** A TCP proxy to the backend that misbehaves per connection; counts the faults it injected. */
export async function faultProxy(upstreamPort: number, faultRate: number) {
  const injected: Record<ProxyMode, number> = { clean: 0, refuse: 0, 'reset-mid-data': 0, 'reset-after-dot': 0, 'stall-after-dot': 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    sockets.add(down);
    down.on('error', () => undefined);
    const r = rand();
    const mode: ProxyMode =
      r >= faultRate ? 'clean' : ((['refuse', 'reset-mid-data', 'reset-after-dot', 'stall-after-dot'] as const)[Math.floor((r / faultRate) * 4)] ?? 'clean');
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
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** mailgate as a child process on a fixed port; kill -9 and restart at will. */
export class GatewayProcess {
  gw: GatewayChild | undefined;
  kills = 0;
  readonly cfg: string;
  readonly port: number;
  constructor(cfg: string, port: number) {
    this.cfg = cfg;
    this.port = port;
  }
  get child(): ChildProcess | undefined {
    return this.gw?.child;
  }
  async start(): Promise<void> {
    this.gw = spawnGateway(this.cfg);
    await waitListening(this.gw, [this.port]);
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

/** Refusal replies by command and text, for the diagnostics. */
export const tempfailTexts = new Map<string, number>();

export type Outcome = 'accepted' | 'tempfail' | 'reject' | 'dropped' | 'refused';

/** One message on its own connection; what the client was told. */
export async function sendOne(port: number, tok: string, bodyLines = Math.floor(rand() * 200)): Promise<Outcome> {
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
        tempfailTexts.set(
          `${s.split(' ')[0]} ${r.code} ${r.text.slice(0, 60)}`,
          (tempfailTexts.get(`${s.split(' ')[0]} ${r.code} ${r.text.slice(0, 60)}`) ?? 0) + 1,
        );
        return r.code >= 500 ? 'reject' : 'tempfail';
      }
    }
    c.write(
      `From: <sender@client.example.net>\r\nTo: <alice@example.test>\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@client.example.net>\r\n\r\n` +
        `${'body line of a message that is padded to some length\r\n'.repeat(bodyLines)}.\r\n`,
    );
    const end = await c.read(20_000);
    if (!end) return 'dropped';
    if (end.code >= 300)
      tempfailTexts.set(`DOT ${end.code} ${end.text.slice(0, 60)}`, (tempfailTexts.get(`DOT ${end.code} ${end.text.slice(0, 60)}`) ?? 0) + 1);
    return end.code < 300 ? 'accepted' : end.code < 500 ? 'tempfail' : 'reject';
  } catch {
    return 'dropped';
  } finally {
    c.close();
  }
}

/** Tokens in every delivered message and quarantined .eml, with their counts. */
export function deliveredTokens(dirs: string[]): Map<string, number> {
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
