// The limit checks with the shipped rules/50-ratelimits.yaml and the real rules loader and engine:
// facts become the right SMTP replies at each stage (421/450/451/550/554), escalation, per-recipient
// and per-message counting, bounces, concurrency, greylisting's full cycle with a controllable
// clock, fail_closed when the store is down, and located errors for bad sections.
import { detachedConnection, emptyEdits, type ConnectionContext } from '../../src/pipeline/check.ts';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createLimitChecks, compileLimitSections } from '../../src/checks/limits/limit-checks.ts';
import type { Check, CheckOutput } from '../../src/pipeline/check.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import type { Stage } from '../../src/pipeline/stages.ts';
import { loadRules, type LoadedRules } from '../../src/rules/loader.ts';
import { knownFacts, knownSections } from '../../src/checks/catalogue.ts';
import type { RulesAware } from '../../src/rules/rules-aware.ts';
import { emptyVerdict, type Verdict } from '../../src/pipeline/verdict.ts';
import { createSharedStore } from '../../src/store/create-store.ts';
import type { SharedStore } from '../../src/store/shared-store.ts';

const logger = pino({ level: 'silent' });
const SHIPPED = new URL('../../rules/50-ratelimits.yaml', import.meta.url);
const T0 = 1_700_000_000_000;

/** A rules directory with the shipped file and `local` as local.d/local.yaml. */
function rulesDir(local?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-rl-rules-'));
  copyFileSync(SHIPPED, join(dir, '50-ratelimits.yaml'));
  if (local !== undefined) {
    mkdirSync(join(dir, 'local.d'));
    writeFileSync(join(dir, 'local.d', 'local.yaml'), local);
  }
  return dir;
}

interface Rig {
  store: SharedStore;
  checks: Array<Check & RulesAware>;
  loaded: LoadedRules;
  clock: { t: number };
  dir: string;
}

function rig(local?: string, store?: SharedStore): Rig {
  const clock = { t: T0 };
  const s = store ?? createSharedStore({ logger, now: () => clock.t });
  const checks = createLimitChecks({ store: s, now: () => clock.t, logger });
  const dir = rulesDir(local);
  const loaded = loadRules(dir, knownFacts(checks.flatMap((c) => c.facts)), knownSections(checks));
  for (const c of checks) c.onRulesLoaded(loaded);
  return { store: s, checks, loaded, clock, dir };
}

/** One connection context per connection FactSet (and per transaction copied from it). */
const contexts = new WeakMap<FactSet, ConnectionContext>();
const rigOf = new WeakMap<ConnectionContext, Rig>();
function contextOf(r: Rig, facts: FactSet, parent?: FactSet): ConnectionContext {
  let c = contexts.get(facts) ?? (parent ? contexts.get(parent) : undefined);
  if (!c) {
    c = detachedConnection();
    rigOf.set(c, r);
  }
  contexts.set(facts, c);
  return c;
}

/** The connection ended: every check's disconnect step (frees concurrency slots). */
async function disconnect(facts: FactSet): Promise<void> {
  const c = contexts.get(facts);
  const r = c ? rigOf.get(c) : undefined;
  if (!c || !r) return;
  for (const check of r.checks) await check.disconnect?.(c);
}

/** Runs one stage like the SMTP session: checks, merge their facts, then the rules. */
async function stage(r: Rig, st: Stage, facts: FactSet, previous: Verdict, recipient?: string, parent?: FactSet): Promise<Verdict> {
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  const signal = new AbortController().signal;
  const connection = contextOf(r, facts, parent);
  await Promise.all(
    r.checks
      .filter((c) => c.stages.includes(st))
      .map((c) => c.run(recipient === undefined ? { stage: st, facts, signal, connection } : { stage: st, facts, signal, recipient, connection }, out)),
  );
  for (const [k, v] of out.facts.entries()) facts.set(k, v);
  return r.loaded.policy.evaluate(st, facts, previous);
}

interface Msg {
  ip?: string;
  helo?: string;
  from?: string;
  rcpts?: string[];
  extra?: Record<string, string>;
}

/** A whole connection with one message; returns where it stopped and the reply. */
async function deliver(
  r: Rig,
  m: Msg = {},
): Promise<{ stage: Stage | 'done'; code?: number; enhanced?: string; text?: string; facts: FactSet; accepted: string[] }> {
  const conn = new FactSet();
  conn.set('client.ip', m.ip ?? '192.0.2.10');
  conn.set('client.port', 40000);
  const refused = (st: Stage, v: Verdict, facts: FactSet) => ({
    stage: st,
    code: v.reply?.code,
    enhanced: v.reply?.enhanced,
    text: v.reply?.text,
    facts,
    accepted: [] as string[],
  });
  try {
    let v = await stage(r, 'connect', conn, emptyVerdict());
    if (v.action === 'tempfail' || v.action === 'reject') return refused('connect', v, conn);
    conn.set('helo.name', m.helo ?? 'mx.example.net');
    v = await stage(r, 'helo', conn, v);
    if (v.action === 'tempfail' || v.action === 'reject') return refused('helo', v, conn);
    const tx = new FactSet(conn);
    const from = m.from ?? 'alice@example.net';
    tx.set('mail.from', from);
    tx.set('mail.from_domain', from ? from.slice(from.indexOf('@') + 1) : '');
    tx.set('mail.null_sender', from === '');
    for (const [k, val] of Object.entries(m.extra ?? {})) tx.set(k, val);
    v = await stage(r, 'mail', tx, v, undefined, conn);
    if (v.action === 'tempfail' || v.action === 'reject') return refused('mail', v, tx);
    const accepted: string[] = [];
    let last: Verdict | undefined;
    for (const rcpt of m.rcpts ?? ['bob@example.test']) {
      tx.set('rcpt.address', rcpt);
      tx.set('rcpt.domain', rcpt.slice(rcpt.indexOf('@') + 1));
      const rv = await stage(r, 'rcpt', tx, v, rcpt);
      if (rv.action === 'tempfail' || rv.action === 'reject') last = rv;
      else accepted.push(rcpt);
    }
    if (accepted.length === 0 && last) return refused('rcpt', last, tx);
    tx.delete('rcpt.address');
    tx.delete('rcpt.domain');
    tx.set('rcpt.addresses', accepted);
    tx.set('rcpt.count', accepted.length);
    v = await stage(r, 'data', tx, v);
    if (v.action === 'tempfail' || v.action === 'reject') return { ...refused('data', v, tx), accepted };
    return { stage: 'done', facts: tx, accepted };
  } finally {
    await disconnect(conn);
  }
}

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups) await c();
});
function track(r: Rig): Rig {
  cleanups.push(
    () => r.store.close(),
    () => rmSync(r.dir, { recursive: true, force: true }),
  );
  return r;
}

describe('shipped rules/50-ratelimits.yaml', () => {
  test('loads with the limit sections; greylisting off; private networks are not limited', async () => {
    const r = track(rig());
    const names = r.loaded.rules.map((x) => x.name);
    for (const n of ['CONCURRENCY_TEMPFAIL', 'RATELIMIT_CONNECT_TEMPFAIL', 'RATELIMIT_RCPT_TEMPFAIL', 'RATELIMIT_DATA_REJECT', 'GREYLIST_DEFER'])
      assert.ok(names.includes(n), n);
    const byName = new Map(r.loaded.rules.map((x) => [x.name, x]));
    assert.deepEqual(
      [
        'RATELIMIT_CONNECT_TEMPFAIL',
        'RATELIMIT_HELO_TEMPFAIL',
        'RATELIMIT_MAIL_TEMPFAIL',
        'RATELIMIT_RCPT_TEMPFAIL',
        'RATELIMIT_DATA_TEMPFAIL',
        'GREYLIST_DEFER',
        'CONCURRENCY_TEMPFAIL',
      ].map((n) => byName.get(n)?.stage),
      ['connect', 'helo', 'mail', 'rcpt', 'data', 'data', 'connect'],
    );
    const greylist = r.checks.find((c) => c.name === 'greylist');
    assert.deepEqual(greylist?.stages, []);
    for (let i = 0; i < 100; i++) {
      const res = await deliver(r, { ip: '10.1.2.3' });
      assert.equal(res.stage, 'done');
    }
    // 50 connections open at once from a private address: not counted.
    const open = Array.from({ length: 50 }, () => new FactSet([['client.ip', '10.1.2.3']]));
    for (const f of open) assert.equal((await stage(r, 'connect', f, emptyVerdict())).action, 'continue');
    for (const f of open) await disconnect(f);
  });

  test('connection rate: 421 4.7.0 at the greeting with a retry hint; escalates; 554 after reject_after', async () => {
    const r = track(
      rig(`ratelimits:
  - name: client_ip_connects
    rate: 2/1m
    burst: 2
    escalate: { after: 3, block: 5m, max_block: 1h, reject_after: 5 }
`),
    );
    const seen: string[] = [];
    for (let i = 0; i < 7; i++) {
      const res = await deliver(r);
      seen.push(res.stage === 'done' ? 'ok' : `${res.code} ${res.enhanced} ${res.text}`);
    }
    assert.deepEqual(seen, [
      'ok',
      'ok',
      '421 4.7.0 Rate limit exceeded (client_ip_connects); try again in 30 seconds',
      // A denied attempt costs nothing: the hint stays (but counts as a strike).
      '421 4.7.0 Rate limit exceeded (client_ip_connects); try again in 30 seconds',
      '421 4.7.0 Rate limit exceeded (client_ip_connects) and retried too soon; try again in 5 minutes',
      '421 4.7.0 Rate limit exceeded (client_ip_connects) and retried too soon; try again in 10 minutes',
      '554 5.7.1 Rate limit exceeded (client_ip_connects) and retried too often; message refused',
    ]);
    // Another client is not affected.
    assert.equal((await deliver(r, { ip: '198.51.100.7' })).stage, 'done');
  });

  test('per-recipient limit: 450 4.7.1 for that recipient only; others are accepted', async () => {
    const r = track(rig(`ratelimits:\n  - { name: recipient_messages, rate: 2/1h, burst: 2 }\n`));
    await deliver(r, { rcpts: ['bob@example.test'] });
    await deliver(r, { rcpts: ['bob@example.test'] });
    const third = await deliver(r, { rcpts: ['bob@example.test'] });
    assert.deepEqual([third.stage, third.code, third.enhanced], ['rcpt', 450, '4.7.1']);
    assert.match(third.text ?? '', /recipient_messages.*try again in 30 minutes/);
    const mixed = await deliver(r, { rcpts: ['bob@example.test', 'carol@example.test'] });
    assert.equal(mixed.stage, 'done');
    assert.deepEqual(mixed.accepted, ['carol@example.test']);
  });

  test('count: recipients at end of DATA: 451 4.7.1; a message bigger than the burst still passes once', async () => {
    const r = track(rig(`ratelimits:\n  - { name: client_ip_recipients, rate: 10/1h, burst: 10 }\n`));
    const rcpts = (n: number) => Array.from({ length: n }, (_, i) => `u${i}@example.test`);
    assert.equal((await deliver(r, { rcpts: rcpts(6) })).stage, 'done');
    const second = await deliver(r, { rcpts: rcpts(6) });
    assert.deepEqual([second.stage, second.code, second.enhanced], ['data', 451, '4.7.1']);
    assert.deepEqual(second.facts.get('ratelimit.data.exceeded'), ['client_ip_recipients']);
    const other = track(rig(`ratelimits:\n  - { name: client_ip_recipients, rate: 10/1h, burst: 10 }\n`));
    assert.equal((await deliver(other, { rcpts: rcpts(25) })).stage, 'done', 'cost clamped to the burst');
    assert.equal((await deliver(other, { rcpts: rcpts(1) })).stage, 'data');
  });

  test('bounces have their own budget (null_sender: only)', async () => {
    const r = track(rig(`ratelimits:\n  - { name: recipient_bounces, rate: 1/1h, burst: 1 }\n`));
    assert.equal((await deliver(r, { from: '' })).stage, 'done');
    const bounce2 = await deliver(r, { from: '' });
    assert.deepEqual([bounce2.stage, bounce2.code], ['rcpt', 450]);
    for (let i = 0; i < 5; i++) assert.equal((await deliver(r, { from: 'alice@example.net' })).stage, 'done', 'normal mail not counted');
  });

  test('null_sender: separate keeps bounces in their own bucket of the same limit', async () => {
    const r = track(
      rig(`ratelimits:
  - name: net_sender
    key: [client_net, sender_domain]
    phase: message
    rate: 1/1h
    null_sender: separate
`),
    );
    assert.equal((await deliver(r, { from: 'a@example.net' })).stage, 'done');
    assert.equal((await deliver(r, { from: 'b@example.net' })).stage, 'mail', 'same network and domain');
    assert.equal((await deliver(r, { from: 'a@other.example' })).stage, 'done', 'another domain');
    assert.equal((await deliver(r, { ip: '192.0.2.99', from: 'c@example.net' })).stage, 'mail', 'same /24');
    assert.equal((await deliver(r, { from: '' })).stage, 'done', 'bounces: separate bucket');
    assert.equal((await deliver(r, { from: '' })).stage, 'mail');
  });

  test('action: score only records facts (no reply from the shipped rules)', async () => {
    const r = track(rig(`ratelimits:\n  - { name: helo_flood, key: helo, phase: connection, rate: 1/1h, action: score }\n`));
    await deliver(r);
    const res = await deliver(r);
    assert.equal(res.stage, 'done');
    assert.deepEqual(res.facts.get('ratelimit.helo.exceeded'), ['helo_flood']);
    assert.equal(res.facts.get('ratelimit.helo.action'), 'score');
  });

  test('dmarc_domain counts only DMARC-authenticated From domains', async () => {
    const r = track(rig(`ratelimits:\n  - { name: dmarc_domain_messages, key: dmarc_domain, phase: message, rate: 1/1h, action: reject }\n`));
    const pass = { 'dmarc.result': 'pass', 'dmarc.domain': 'example.net' };
    assert.equal((await deliver(r, { extra: pass })).stage, 'done');
    const second = await deliver(r, { extra: pass });
    assert.deepEqual([second.stage, second.code, second.enhanced], ['data', 550, '5.7.1']);
    assert.equal((await deliver(r, { extra: { 'dmarc.result': 'fail', 'dmarc.domain': 'example.net' } })).stage, 'done', 'unauthenticated: not counted');
  });

  test('shared concurrency limit: 421 while the slots are taken; free again on close', async () => {
    const r = track(rig(`concurrency:\n  - { name: client_ip_connections, max: 1 }\n`));
    const a = new FactSet([['client.ip', '192.0.2.10']]);
    const b = new FactSet([['client.ip', '192.0.2.10']]);
    const va = await stage(r, 'connect', a, emptyVerdict());
    assert.equal(va.action, 'continue');
    const vb = await stage(r, 'connect', b, emptyVerdict());
    assert.deepEqual([vb.action, vb.reply?.code, vb.reply?.enhanced], ['tempfail', 421, '4.7.0']);
    assert.match(vb.reply?.text ?? '', /Too many connections/);
    await disconnect(a);
    const c = new FactSet([['client.ip', '192.0.2.10']]);
    assert.equal((await stage(r, 'connect', c, emptyVerdict())).action, 'continue');
    await disconnect(c);
  });

  test('greylisting full cycle with a clock; skip conditions; auto-allow of the network', async () => {
    const r = track(rig(`greylist:\n  enabled: true\n  auto_allow_after: 2\n`));
    const msg = { extra: { 'spf.result': 'none' } };
    const first = await deliver(r, msg);
    assert.deepEqual([first.stage, first.code, first.enhanced, first.text], ['data', 451, '4.7.1', 'Greylisted: please try again in 5 minutes']);
    r.clock.t += 60_000;
    const early = await deliver(r, msg);
    assert.deepEqual([early.stage, early.text], ['data', 'Greylisted: please try again in 4 minutes']);
    assert.equal(early.facts.get('greylist.result'), 'early');
    r.clock.t += 240_000;
    const passed = await deliver(r, msg);
    assert.equal(passed.stage, 'done');
    assert.equal(passed.facts.get('greylist.result'), 'passed');
    // Skip: SPF pass is not greylisted at all.
    const spf = await deliver(r, { from: 'x@spf.example', extra: { 'spf.result': 'pass' } });
    assert.deepEqual([spf.stage, spf.facts.get('greylist.result')], ['done', 'skipped']);
    // A second triplet from the network passes → the network is auto-allowed.
    await deliver(r, { from: 'y@example.org', ...msg });
    r.clock.t += 300_000;
    assert.equal((await deliver(r, { from: 'y@example.org', ...msg })).stage, 'done');
    const fresh = await deliver(r, { ip: '192.0.2.77', from: 'new@example.com', ...msg });
    assert.deepEqual([fresh.stage, fresh.facts.get('greylist.result')], ['done', 'allowed']);
  });

  test('fail_closed with the store down: 4xx, no crash, no wait', async () => {
    const store = createSharedStore({
      redis: 'redis://127.0.0.1:1',
      options: { fail_mode: 'fail_closed', key_prefix: 'x:', reconnect_max_delay_ms: 1000 },
      logger,
      now: () => T0,
    });
    const r = track(
      rig(
        `ratelimits:\n  - { name: client_ip_connects, rate: 100/1m }\nconcurrency:\n  - { name: client_ip_connections, max: 10 }\ngreylist: { enabled: true, skip: { spf.result: pass } }\n`,
        store,
      ),
    );
    const t = performance.now();
    const res = await deliver(r);
    assert.ok(performance.now() - t < 500);
    assert.deepEqual([res.stage, res.code, res.enhanced], ['connect', 421, '4.7.0']);
    assert.equal(res.facts.get('concurrency.unavailable'), true);
    assert.equal(res.facts.get('ratelimit.connect.unavailable'), true);
    const probe = r.checks.find((c) => c.readiness)?.readiness;
    const ready = await probe?.check();
    assert.equal(ready?.ok, false);
    assert.match(ready?.detail ?? '', /redis down/);
  });

  test('fail_open with the store down: limits run per instance on the in-process store', async () => {
    const store = createSharedStore({ redis: 'redis://127.0.0.1:1', options: { key_prefix: 'x:', reconnect_max_delay_ms: 1000 }, logger, now: () => T0 });
    const r = track(rig(`ratelimits:\n  - { name: client_ip_connects, rate: 1/1h, burst: 1 }\ngreylist: { enabled: true }\n`, store));
    const a = await deliver(r, { extra: { 'spf.result': 'none' } });
    assert.equal(a.stage, 'done', 'greylisting skipped while the store is down');
    assert.equal(a.facts.get('greylist.result'), 'unavailable');
    const b = await deliver(r);
    assert.deepEqual([b.stage, b.code], ['connect', 421], 'the limit still holds (locally)');
    assert.equal((await r.checks.find((c) => c.readiness)?.readiness?.check())?.ok, true);
  });
});

describe('section errors', () => {
  const load = (local: string) => {
    const dir = rulesDir(local);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const store = createSharedStore({ logger, now: () => T0 });
    cleanups.push(() => store.close());
    const checks = createLimitChecks({ store, now: () => T0, logger });
    return () => loadRules(dir, knownFacts(checks.flatMap((c) => c.facts)), knownSections(checks));
  };

  test('schema problems are reported with their file and line', () => {
    const run = load(`ratelimits:
  - name: Bad-Name
    key: client_ip
greylist:
  delay: soon
`);
    assert.throws(run, (err: Error) => {
      assert.match(err.message, /local\.yaml:2: ratelimits\[0\]\.name: expected a limit name/);
      assert.match(err.message, /local\.yaml:5: greylist\.delay: expected a duration/);
      return true;
    });
  });

  test('inconsistent limits are reported with their file and line', () => {
    const run = load(`ratelimits:
  - name: bad_one
    key: recipient
    phase: message
    rate: 10/1m
  - name: no_rate
    key: client_ip
    phase: connection
  - name: too_early
    key: sender
    phase: message
    stage: connect
    rate: 1/s
  - name: late_when
    key: client_ip
    phase: connection
    rate: 1/s
    when: { spf.result: pass }
`);
    assert.throws(run, (err: Error) => {
      assert.match(err.message, /local\.yaml:3: .*limit bad_one: recipient and recipient_domain keys need phase: recipient/);
      assert.match(err.message, /local\.yaml:6: .*limit no_rate: missing "rate"/);
      assert.match(err.message, /local\.yaml:12: .*limit too_early: stage connect is too early/);
      assert.match(err.message, /local\.yaml:18: .*limit late_when: "when" reads facts known only at mail/);
      return true;
    });
  });

  test('compileLimitSections (without the loader) lists problems by path', () => {
    assert.throws(
      () => compileLimitSections({ ratelimits: [{ name: 'x', key: 'client_ip', phase: 'connection' }] }),
      /ratelimits\[0\]\.name: limit x: missing "rate"/,
    );
    const ok = compileLimitSections({ ratelimits: [{ name: 'x', key: ['client_net', 'sender_domain'], phase: 'message', rate: '100/1m', burst: 20 }] });
    assert.deepEqual(
      ok.ratelimits?.map((l) => [l.stage, l.burst, l.rate]),
      [['mail', 20, { count: 100, periodMs: 60_000 }]],
    );
  });
});
