// Faults survived, nothing lost (issue 14): messages flow from several clients through a mailgate
// child process to a private Postfix while faults are injected — mailgate SIGKILLed and restarted
// at random moments, the backend stopped for a while, and a fault proxy in front of Postfix that
// refuses, resets mid-DATA, resets or stalls after the final dot. A reconciler then compares what
// each client was told with the Maildir and the quarantine: every 250 is there exactly once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort, loopbackDns } from '../helpers/gateway.ts';
import { faultProxy, GatewayProcess, sendOne, deliveredTokens, tempfailTexts, rand, sleep, type Outcome } from '../helpers/faults.ts';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';

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
      if (o === 'refused')
        await sleep(100); // mailgate is restarting
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
  assert.deepEqual(
    readdirSync(join(dir, 'spool')).filter((f) => f.startsWith('spool-')),
    [],
  );
});

test('faults: Redis killed and paused mid-load (fail_open and fail_closed) — nothing lost', async (t) => {
  const { startRedis, uniquePrefix } = await import('../helpers/redis.ts');
  const { startGateway, testConfig } = await import('../helpers/gateway.ts');
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  if (!redis.controllable) return t.skip('REDIS_URL points at a server this test cannot kill');
  const pf: PostfixInstance = await startPostfix();
  cleanups.push(() => pf.destroy());
  // The shipped rules with their limits applied to loopback too (they exempt it), and generous
  // enough never to trigger: every connection and message then makes Redis calls.
  const { cpSync } = await import('node:fs');
  const rulesDir = mkdtempSync(join(tmpdir(), 'mailgate-faults-rules-'));
  cpSync(join(import.meta.dirname, '..', '..', 'rules'), rulesDir, { recursive: true });
  const everyone = '{ client.ip: { cidr: [0.0.0.0/0] } }';
  writeFileSync(
    join(rulesDir, 'local.d', 'faults.yaml'),
    `concurrency:\n  - { name: client_ip_connections, max: 10000, when: ${everyone} }\n` +
      `ratelimits:\n  - { name: client_net_messages, rate: 100000/1m, burst: 100000, when: ${everyone} }\n  - { name: recipient_messages, rate: 100000/1m, burst: 100000, when: ${everyone} }\n`,
  );
  const figures: Record<string, unknown> = {};
  for (const failMode of ['fail_open', 'fail_closed'] as const) {
    const gw = await startGateway(
      testConfig({
        backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
        redis: redis.url,
        redis_options: { key_prefix: uniquePrefix(failMode), fail_mode: failMode, command_timeout_ms: 200 },
        rules: rulesDir,
        checks: { disabled: ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist', 'fcrdns'] },
        limits: { max_connections_per_ip: 200 },
      }),
    );
    cleanups.push(() => gw.stop(100));
    const outcomes = new Map<string, Outcome>();
    let done = false;
    let next = failMode === 'fail_open' ? 100_000 : 200_000;
    const clients = Array.from({ length: 2 }, async () => {
      while (!done) {
        const tok = `fault-${next++}`;
        outcomes.set(tok, await sendOne(gw.port, tok));
        await sleep(20);
      }
    });
    await sleep(500);
    await redis.kill();
    await sleep(800);
    await redis.restart();
    await sleep(500);
    redis.pause();
    await sleep(1000);
    redis.resume();
    await sleep(500);
    done = true;
    await Promise.all(clients);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && pf.queue().length > 0) await sleep(200);
    await sleep(300);
    const counts = deliveredTokens([join(pf.mailBase, 'alice', 'new'), join(pf.mailBase, 'alice', 'cur')]);
    let accepted = 0;
    let lost = 0;
    let duplicated = 0;
    let other = 0;
    for (const [tok, o] of outcomes) {
      const n = counts.get(tok) ?? 0;
      if (o === 'accepted') {
        accepted++;
        if (n !== 1) n === 0 ? lost++ : duplicated++;
      } else other++;
    }
    figures[failMode] = { sent: outcomes.size, accepted, refusedOrTempfailed: other, lost, duplicated };
    assert.equal(lost, 0, `${failMode}: told 250 but not delivered`);
    assert.equal(duplicated, 0);
    assert.ok(accepted > 10, `${failMode}: ${JSON.stringify(figures[failMode])}`);
    // fail_closed must have refused something while Redis was gone (else Redis was not in play).
    if (failMode === 'fail_closed') assert.ok(other > 0, `fail_closed refused nothing: ${JSON.stringify(figures[failMode])}`);
  }
  t.diagnostic(`figures ${JSON.stringify(figures)}`);
});

test('faults: an unwritable quarantine gives 4xx, never a 250 for a message that is nowhere', async () => {
  const { startGateway, testConfig } = await import('../helpers/gateway.ts');
  const { makeRulesDir } = await import('../helpers/rules-dir.ts');
  const pf: PostfixInstance = await startPostfix();
  cleanups.push(() => pf.destroy());
  const rules = makeRulesDir({
    '00-actions.yaml': 'actions: { reject: 100, quarantine: 5 }\n',
    '10-q.yaml': 'rules:\n  - name: Q\n    description: quarantine these\n    when: { message.subject: { glob: "fault-9*" } }\n    score: 10\n',
  });
  const base = mkdtempSync(join(tmpdir(), 'mailgate-q-broken-'));
  const qdir = join(base, 'quarantine');
  const gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
      rules,
      quarantine: { dir: qdir },
      checks: { disabled: ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist', 'fcrdns'] },
    }),
  );
  cleanups.push(() => gw.stop(100));
  // The disk fails under the running gateway: the quarantine "directory" becomes a regular file,
  // so every entry write fails (ENOTDIR), as on a read-only or full disk, for root too (which
  // permission bits would not stop).
  rmSync(qdir, { recursive: true, force: true });
  writeFileSync(qdir, 'not a directory');
  const quarantined: Outcome[] = [];
  for (let i = 0; i < 10; i++) quarantined.push(await sendOne(gw.port, `fault-9${i}`));
  const clean = await sendOne(gw.port, 'fault-1');
  assert.deepEqual(quarantined, Array(10).fill('tempfail'), 'a quarantine that cannot be written must not answer 250');
  assert.equal(clean, 'accepted');
  const deadline = Date.now() + 15_000;
  let counts = deliveredTokens([join(pf.mailBase, 'alice', 'new')]);
  while (Date.now() < deadline && !counts.has('fault-1')) {
    await sleep(200);
    counts = deliveredTokens([join(pf.mailBase, 'alice', 'new')]);
  }
  assert.equal(counts.get('fault-1'), 1);
  assert.ok(![...counts.keys()].some((k) => k.startsWith('fault-9')), 'a message meant for quarantine was relayed');
});

test('faults: DNS that never answers — every message still gets a reply in bounded time, each 250 delivered', async (t) => {
  const { startGateway, testConfig } = await import('../helpers/gateway.ts');
  const { startDnsServer } = await import('../helpers/dns-server.ts');
  const dns = await startDnsServer({ mode: 'silent' });
  cleanups.push(() => dns.close());
  const pf: PostfixInstance = await startPostfix();
  cleanups.push(() => pf.destroy());
  // Every DNS-based check on (SPF, DKIM/DMARC, FCrDNS, DNSBL), against a resolver that hangs.
  const gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
      dns: { servers: [dns.address], timeout_ms: 300 },
      checks: { disabled: ['greylist'] },
    }),
  );
  cleanups.push(() => gw.stop(100));
  const outcomes: Array<{ tok: string; o: Outcome; ms: number }> = [];
  for (let i = 0; i < 8; i++) {
    const t0 = Date.now();
    const tok = `fault-7${i}`;
    outcomes.push({ tok, o: await sendOne(gw.port, tok), ms: Date.now() - t0 });
  }
  t.diagnostic(`outcomes ${JSON.stringify(outcomes.map((x) => `${x.o}/${x.ms}ms`))} queries ${dns.queries.length}`);
  assert.ok(dns.queries.length > 0, 'the checks did not ask DNS: the fault was not exercised');
  for (const x of outcomes) assert.ok(x.o !== 'dropped' && x.ms < 15_000, `${x.tok}: ${x.o} after ${x.ms} ms`);
  const deadline = Date.now() + 15_000;
  const accepted = outcomes.filter((x) => x.o === 'accepted').map((x) => x.tok);
  let counts = deliveredTokens([join(pf.mailBase, 'alice', 'new')]);
  while (Date.now() < deadline && accepted.some((k) => !counts.has(k))) {
    await sleep(200);
    counts = deliveredTokens([join(pf.mailBase, 'alice', 'new')]);
  }
  for (const k of accepted) assert.equal(counts.get(k), 1, `${k} told 250 but delivered ${counts.get(k) ?? 0} times`);
});
