// Digests end to end: per-recipient digests are composed with nodemailer and delivered through
// the backend into a private Postfix; the release link in one works exactly once (the message
// arrives), a tampered link and an expired link are refused; domains not configured get none.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { freePort } from '../helpers/postfix.ts';
import { startQuarantineEnv, type QuarantineEnv } from '../helpers/quarantine-env.ts';
import { domainSettings, sendDigests } from '../../src/delivery/quarantine/digest.ts';
import { digestSchema } from '../../src/config/quarantine-schema.ts';
import { signToken, verifyToken } from '../../src/delivery/quarantine/digest-token.ts';

const KEY = 'digest-key-for-tests-0123456789abcdef';
let env: QuarantineEnv;
let base: string;

before(async () => {
  const adminPort = await freePort();
  base = `http://127.0.0.1:${adminPort}`;
  env = await startQuarantineEnv({
    quarantine: {
      digest: { enabled: true, hmac_key: KEY, link_base_url: base, link_ttl: '2d', interval: 0, from: 'quarantine', domains: { 'example.test': {} } },
    },
    admin: { host: '127.0.0.1', port: adminPort },
  });
});
after(() => env?.close());

test('digest: sent per recipient through the backend; its link releases once; tampered and expired links refused', async () => {
  const a1 = await env.quarantine({ subject: 'QUARANTINE-ME first' });
  const a2 = await env.quarantine({ subject: 'QUARANTINE-ME second' });
  const b1 = await env.quarantine({ subject: 'QUARANTINE-ME for bob', to: ['bob@example.test'] });
  const dry = await env.cli(['digest', '--dry-run', '--json']);
  assert.equal(dry.code, 0, dry.err);
  const planned = JSON.parse(dry.out) as Array<{ rcpt: string; count: number; result: string }>;
  assert.deepEqual(planned.map((p) => [p.rcpt, p.count, p.result]).sort(), [
    ['alice@example.test', 2, 'dry run'],
    ['bob@example.test', 1, 'dry run'],
  ]);

  const rt = env.gw.runtime;
  const sent = await sendDigests({ store: env.gw.quarantine, backend: rt.backend, config: rt.config });
  assert.equal(sent.length, 2);
  for (const s of sent) assert.match(s.result, /^sent: 250 2\.0\.0 Ok: queued as/, s.rcpt);

  const digests = await env.waitDelivered('alice', 'X-Mailgate-Digest');
  assert.equal(digests.length, 1);
  const mail = await simpleParser(digests[0] as Buffer);
  assert.match(mail.subject ?? '', /2 message\(s\) held for you/);
  assert.equal(mail.from?.value[0]?.address, 'quarantine@mx.example.test');
  const links = [...(mail.text ?? '').matchAll(/release: (\S+)/g)].map((m) => m[1] as string);
  assert.equal(links.length, 2);
  assert.ok(links.every((l) => l.startsWith(`${base}/q/release/`)));
  // Newest first: the second message's link comes first.
  const link = links[1] as string;
  const token = link.slice(link.lastIndexOf('/') + 1);
  const tokPayload = verifyToken(KEY, token);
  assert.ok(tokPayload.ok && tokPayload.payload.id === a1.id && tokPayload.payload.rcpt === 'alice@example.test');

  // GET only asks (link scanners fetch GETs); nothing is released by it.
  const confirm = await fetch(link);
  assert.equal(confirm.status, 200);
  assert.match(await confirm.text(), /Release this message to alice@example\.test\?/);
  assert.equal(env.delivered('alice', a1.tok).length, 0);

  const post = (url: string) => fetch(url, { method: 'POST', headers: { origin: base } });
  const first = await post(link);
  assert.equal(first.status, 200, await first.clone().text());
  assert.match(await first.text(), /Released/);
  assert.equal((await env.waitDelivered('alice', a1.tok)).length, 1, 'released message arrived');
  const second = await post(link);
  assert.equal(second.status, 410);
  assert.match(await second.text(), /already used/);

  // Tampered: another id in the payload, signature kept.
  const [body, mac] = token.split('.') as [string, string];
  const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), id: a2.id })).toString('base64url');
  const cases = [
    { desc: 'payload changed', url: `${base}/q/release/${forged}.${mac}`, status: 403 },
    { desc: 'signature changed', url: `${base}/q/release/${body}.${mac.slice(0, -2)}AA`, status: 403 },
    { desc: 'garbage', url: `${base}/q/release/not-a-token`, status: 403 },
    { desc: 'expired', url: `${base}/q/release/${signToken(KEY, { id: a2.id, rcpt: 'alice@example.test', exp: Date.now() - 1000 })}`, status: 410 },
    {
      desc: 'signed with another key',
      url: `${base}/q/release/${signToken('another-key-another-key-another-key!', { id: a2.id, rcpt: 'alice@example.test', exp: Date.now() + 60_000 })}`,
      status: 403,
    },
  ];
  for (const c of cases) {
    assert.equal((await fetch(c.url)).status, c.status, `GET ${c.desc}`);
    assert.equal((await post(c.url)).status, c.status, `POST ${c.desc}`);
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(env.delivered('alice', a2.tok).length, 0, 'nothing released by a refused link');
  assert.equal((await env.gw.quarantine.get(b1.id))?.row.releasedAt, undefined);
});

test('digest signing (table): verify accepts only the exact token before expiry', () => {
  const now = 1_800_000_000_000;
  const good = signToken(KEY, { id: 'ID1', rcpt: 'a@example.test', exp: now + 1000, nonce: 'n' });
  const cases = [
    { desc: 'good', token: good, at: now, expected: 'ok' },
    { desc: 'at expiry', token: good, at: now + 1000, expected: 'expired' },
    { desc: 'two dots', token: `${good}.x`, at: now, expected: 'malformed' },
    { desc: 'no dot', token: 'abc', at: now, expected: 'malformed' },
    { desc: 'too long', token: 'a'.repeat(3000), at: now, expected: 'malformed' },
    { desc: 'flipped mac', token: good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A'), at: now, expected: 'bad signature' },
  ];
  for (const c of cases) {
    const r = verifyToken(KEY, c.token, c.at);
    assert.equal(r.ok ? 'ok' : r.why, c.expected, c.desc);
  }
});

test('digest settings per domain (table): off by default, listed domains, "*", disabled entries', () => {
  const on = digestSchema.parse({
    enabled: true,
    hmac_key: KEY,
    domains: { 'example.test': {}, 'example.org': { from: 'pm@example.org' }, 'legacy.example': { enabled: false } },
  });
  const star = digestSchema.parse({ enabled: true, hmac_key: KEY, domains: { '*': {}, 'quiet.example': { enabled: false } } });
  const cases = [
    { desc: 'default config: off', cfg: digestSchema.parse({}), rcpt: 'a@example.test', expected: undefined },
    { desc: 'listed domain', cfg: on, rcpt: 'a@Example.TEST', expected: 'postmaster' },
    { desc: 'domain with its own sender', cfg: on, rcpt: 'b@example.org', expected: 'pm@example.org' },
    { desc: 'listed but disabled', cfg: on, rcpt: 'c@legacy.example', expected: undefined },
    { desc: 'not listed', cfg: on, rcpt: 'd@other.example', expected: undefined },
    { desc: 'wildcard', cfg: star, rcpt: 'e@anything.example', expected: 'postmaster' },
    { desc: 'wildcard, domain disabled', cfg: star, rcpt: 'f@quiet.example', expected: undefined },
  ];
  for (const c of cases) assert.equal(domainSettings(c.cfg, c.rcpt)?.from, c.expected, c.desc);
});
