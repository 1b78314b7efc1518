// Scale-out on a real load balancer: HAProxy (Debian) round-robins SMTP to two mailgate instances
// with `send-proxy-v2`; both share one redis-server and relay to the private Postfix. Shows that
// the client's own address reaches mailgate's rules through HAProxy, and that a rate limit holds
// across both instances, and that the quarantine is shared (PostgreSQL index, one quarantine
// directory as the shared volume): what one instance held, the other lists and releases. The
// client binds 127.0.0.5 / 127.0.0.6 so its address differs from HAProxy's.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBackend, startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.ts';
import { freePort } from '../helpers/postfix.ts';
import { token, waitDelivered } from '../helpers/maildir.ts';
import { postgresAvailable, startPostgres, type TestPostgres } from '../helpers/postgres.ts';

const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));
const SKIP = HAPROXY ? false : 'haproxy is missing: apt-get install -y haproxy (npm test installs it as root)';

const BLOCKED = '127.0.0.5';
const LIMITED = '127.0.0.6';

/** A line-based SMTP client whose socket is bound to `localAddress` (the "Internet client"). */
class Client {
  readonly socket: net.Socket;
  #buf = '';
  #waiters: Array<(l: string | undefined) => void> = [];
  #lines: string[] = [];
  private constructor(s: net.Socket) {
    this.socket = s;
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, nl).replace(/\r$/, '');
        this.#buf = this.#buf.slice(nl + 1);
        // Multi-line replies: only the last line ("250 …", not "250-…") completes a reply.
        if (line[3] === '-') continue;
        const w = this.#waiters.shift();
        if (w) w(line);
        else this.#lines.push(line);
      }
    });
    s.on('close', () => {
      for (const w of this.#waiters.splice(0)) w(undefined);
    });
    s.on('error', () => undefined);
  }
  static connect(port: number, localAddress: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }
  read(ms = 10_000): Promise<string | undefined> {
    const l = this.#lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(undefined), ms);
      this.#waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  }
  cmd(line: string): Promise<string | undefined> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }
  close(): void {
    this.socket.destroy();
  }
}

/** One SMTP transaction from `localAddress` through the balancer; every reply line in order. */
async function transaction(port: number, localAddress: string, tok: string): Promise<{ greeting: string; mail?: string; end?: string }> {
  const c = await Client.connect(port, localAddress);
  try {
    const greeting = (await c.read()) ?? '(closed)';
    if (!greeting.startsWith('220')) return { greeting };
    await c.cmd('EHLO client.example.net');
    const mail = (await c.cmd('MAIL FROM:<sender@example.net>')) ?? '(closed)';
    if (!mail.startsWith('250')) return { greeting, mail };
    await c.cmd('RCPT TO:<alice@example.test>');
    await c.cmd('DATA');
    c.socket.write(`From: sender@example.net\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@example.net>\r\n\r\n${tok}\r\n.\r\n`);
    const end = (await c.read(30_000)) ?? '(closed)';
    await c.cmd('QUIT');
    return { greeting, mail, end };
  } finally {
    c.close();
  }
}

async function waitPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`haproxy did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('HAProxy send-proxy-v2 in front of two mailgate instances sharing Redis', { skip: SKIP }, () => {
  let redis: TestRedis;
  let pg: TestPostgres | undefined;
  const gws: TestGateway[] = [];
  let haproxy: ChildProcess | undefined;
  let haproxyLog = '';
  let lbPort = 0;
  let dir = '';

  before(async () => {
    await requireBackend();
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'mg-haproxy-'));
    const rules = join(dir, 'rules');
    mkdirSync(join(rules, 'local.d'), { recursive: true });
    copyFileSync(new URL('../../rules/50-ratelimits.yaml', import.meta.url), join(rules, '50-ratelimits.yaml'));
    // The shipped limits skip loopback; these two key on the client address only PROXY can carry.
    writeFileSync(
      join(rules, 'local.d', 'lb.yaml'),
      `ratelimits:
  - name: lb_client_messages
    key: client_ip
    phase: message
    rate: 3/1h
    burst: 3
    escalate: false
    when: { client.ip: { cidr: [${LIMITED}/32] } }
rules:
  - name: LB_BLOCKED_CLIENT
    description: A client address blocked by policy (seen through the load balancer)
    when: { client.ip: { cidr: [${BLOCKED}/32] } }
    action: reject
    reply: { code: 554, enhanced: 5.7.1, text: "Client {client.ip} blocked" }
  - name: LB_HOLD
    description: Held for review (the shared-quarantine test)
    when: { message.subject: { glob: "lbq-*" } }
    action: quarantine
`,
    );
    // The shared quarantine: one index in PostgreSQL, one directory for the entry files (the
    // shared volume of a real deployment), so any instance lists and releases what another held.
    if (postgresAvailable().ok) pg = await startPostgres();
    const quarantine = pg ? { dir: join(dir, 'quarantine'), index: { backend: 'postgres', url: pg.url, schema: 'lb' } } : { dir: join(dir, 'quarantine') };
    const shared = { redis: redis.url, redis_options: { key_prefix: uniquePrefix('lb') }, quarantine };
    for (const name of ['a', 'b']) {
      gws.push(
        await startGateway(
          testConfig({
            rules,
            listen: [{ host: '127.0.0.1', port: 0, proxy_protocol: ['127.0.0.1/32'] }],
            smtp: { shutdown_grace_s: 5, banner: `mailgate-${name}` },
            ...shared,
          }),
        ),
      );
    }
    lbPort = await freePort();
    const monitor = await freePort();
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  maxconn 200
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend health
  mode http
  bind 127.0.0.1:${monitor}
  monitor-uri /health
frontend smtp
  bind 127.0.0.1:${lbPort}
  default_backend mailgate
backend mailgate
  balance roundrobin
  server a 127.0.0.1:${gws[0]?.port} send-proxy-v2
  server b 127.0.0.1:${gws[1]?.port} send-proxy-v2
`,
    );
    haproxy = spawn(HAPROXY as string, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout?.on('data', (d: Buffer) => (haproxyLog += d.toString()));
    haproxy.stderr?.on('data', (d: Buffer) => (haproxyLog += d.toString()));
    // Wait on HAProxy's monitor port, not the SMTP frontend: a probe there would be passed on to a gateway.
    await waitPort(monitor, 10_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${haproxyLog}`);
    });
  });

  after(async () => {
    haproxy?.kill('SIGTERM');
    for (const g of gws) await g.stop(1000);
    await redis?.stop();
    pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the client's address reaches the rules through HAProxy, on both instances", async () => {
    const greetings: string[] = [];
    for (let i = 0; i < 4; i++) greetings.push((await transaction(lbPort, BLOCKED, token('blk'))).greeting);
    // The rule matched the client's own address (in the reply text), not HAProxy's 127.0.0.1.
    for (const g of greetings) assert.equal(g, `554 5.7.1 Client ${BLOCKED} blocked`);
    // A client the rule does not name is served, by both instances in turn (round robin).
    const banners = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await transaction(lbPort, '127.0.0.7', token('ok'));
      assert.ok(r.end?.startsWith('250'), JSON.stringify(r));
      banners.add(r.greeting.slice(r.greeting.lastIndexOf(' ') + 1));
    }
    assert.deepEqual([...banners].sort(), ['mailgate-a', 'mailgate-b']);
  });

  test('a rate limit holds across both instances (3 per hour in total, not 3 each)', async () => {
    const tok = token('lbrl');
    const results: string[] = [];
    const banners = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await transaction(lbPort, LIMITED, `${tok}-${i}`);
      banners.add(r.greeting.slice(r.greeting.lastIndexOf(' ') + 1));
      results.push(r.end ? `end ${r.end.slice(0, 3)}` : `mail ${r.mail}`);
    }
    assert.deepEqual([...banners].sort(), ['mailgate-a', 'mailgate-b'], 'both instances served this client');
    assert.deepEqual(results.slice(0, 3), ['end 250', 'end 250', 'end 250']);
    for (const r of results.slice(3)) assert.match(r, /^mail 450 4\.7\.1 Rate limit exceeded \(lb_client_messages\)/);
    for (let i = 0; i < 3; i++) assert.equal((await waitDelivered(`${tok}-${i}`)).length, 1);
  });

  test('the quarantine is shared: held through one instance, listed and released through the other', {
    skip: postgresAvailable().ok ? false : 'postgresql is missing',
  }, async () => {
    const tok = token('lbq');
    const r = await transaction(lbPort, '127.0.0.8', tok);
    assert.match(r.end ?? '', /^250 2\.0\.0 Message accepted \(/, JSON.stringify(r));
    const held = r.greeting.slice(r.greeting.lastIndexOf(' ') + 1) === 'mailgate-a' ? 0 : 1;
    const other = gws[1 - held] as TestGateway;
    const { rows } = await other.quarantine.list({ status: 'all' });
    const row = rows.find((x) => x.subject === tok);
    assert.ok(row, `the other instance (${other === gws[0] ? 'a' : 'b'}) lists the entry held by the first`);
    assert.ok((await other.quarantine.bytes(row)).includes(tok), 'and reads its bytes from the shared directory');
    const { releaseEntry } = await import('../../src/delivery/release.ts');
    const out = await releaseEntry(other.quarantine, other.runtime.backend, row.id, { by: 'scale-out test' });
    assert.equal(out.status, 'released', JSON.stringify(out));
    assert.equal((await waitDelivered(tok)).length, 1, 'released through the other instance, delivered once');
  });
});
