// The admin app without a socket (Hono's app.request): health routes, API authentication, the
// console login with login-CSRF, session CSRF and same-origin checks, rate limits, escaping of
// hostile message data, security headers; plus passwords, HTML-to-text and config keys (tables).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createAdminApp, CSP } from '../../src/admin/server.ts';
import { adminSchema } from '../../src/config/admin-schema.ts';
import { hashPassword, safeEqual, verifyPassword } from '../../src/admin/password.ts';
import { htmlToPlain, headerFields } from '../../src/admin/message-view.ts';
import { WindowLimiter } from '../../src/admin/rate-limit.ts';
import { configSchema } from '../../src/config/schema.ts';
import { parseSize, quarantineSchema } from '../../src/config/quarantine-schema.ts';
import { QuarantineStore } from '../../src/delivery/quarantine/store.ts';
import { MaildirBackend } from '../../src/delivery/backend.ts';
import type { Runtime } from '../../src/pipeline/runtime.ts';

const TOKEN = 'unit-token-0123456789abcdef0123456789abcdef';
const HOST = 'admin.test:9025';
let dir: string;
let store: QuarantineStore;
let hash: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mg-qadmin-'));
  store = new QuarantineStore({ config: quarantineSchema.parse({ dir: join(dir, 'q') }) });
  hash = await hashPassword('s3cret pass');
  await store.put(
    {
      id: 'EVIL1',
      received: '2026-11-20T10:00:00.000Z',
      client: { ip: '192.0.2.1', helo: '<b>helo</b>' },
      from: '"<script>alert(1)</script>"@evil.example',
      rcpts: ['alice@example.test'],
      size: 10,
      reason: '<img src=x onerror=alert(2)>',
      score: 12,
      rules: ['R<1>'],
      subject: '<iframe src=//evil>',
    },
    [Buffer.from('Subject: <iframe src=//evil>\r\n\r\n<script>alert(3)</script>\r\n')],
  );
});
after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function app(admin: Record<string, unknown> = {}) {
  const config = configSchema.parse({
    hostname: 'mx.example.test',
    domains: ['example.test'],
    backend: { maildir: join(dir, 'md') },
    quarantine: { dir: join(dir, 'q') },
  });
  const rt = {
    config,
    logger: pino({ level: 'silent' }),
    quarantine: store,
    backend: new MaildirBackend(join(dir, 'md')),
    draining: false,
  } as unknown as Runtime;
  return createAdminApp(
    rt,
    [{ name: 'backend', check: async () => ({ ok: true, detail: 'ok' }) }],
    adminSchema.parse({ auth: { tokens: [TOKEN], users: [{ name: 'admin', password: hash }] }, ...admin }),
    store,
  );
}

function cookiesOf(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of res.headers.getSetCookie()) {
    const [kv] = c.split(';');
    const eq = (kv as string).indexOf('=');
    out[(kv as string).slice(0, eq)] = (kv as string).slice(eq + 1);
  }
  return out;
}

async function loginSession(a: ReturnType<typeof app>): Promise<{ cookie: string; csrf: string }> {
  const form = await a.request('/quarantine/login', { headers: { host: HOST } });
  const loginCookie = cookiesOf(form).mg_login as string;
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())?.[1] as string;
  const res = await a.request('/quarantine/login', {
    method: 'POST',
    headers: { host: HOST, origin: `http://${HOST}`, cookie: `mg_login=${loginCookie}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ user: 'admin', password: 's3cret pass', csrf }).toString(),
  });
  assert.equal(res.status, 303);
  const session = cookiesOf(res).mg_session as string;
  assert.ok(session);
  assert.match(res.headers.getSetCookie().find((c) => c.startsWith('mg_session=')) ?? '', /HttpOnly.*SameSite=Strict|SameSite=Strict.*HttpOnly/i);
  const page = await (await a.request('/quarantine', { headers: { host: HOST, cookie: `mg_session=${session}` } })).text();
  return { cookie: `mg_session=${session}`, csrf: /name="csrf" value="([^"]+)"/.exec(page)?.[1] as string };
}

describe('admin app', () => {
  test('health routes unchanged; security headers on every response', async () => {
    const a = app();
    const cases = [
      { path: '/healthz', method: 'GET', status: 200, body: '{"ok":true}\n' },
      { path: '/healthz', method: 'POST', status: 405, body: 'method not allowed\n' },
      { path: '/readyz', method: 'GET', status: 200 },
      { path: '/metrics', method: 'GET', status: 200 },
      { path: '/metrics', method: 'DELETE', status: 405 },
      { path: '/nope', method: 'GET', status: 404 },
    ];
    for (const c of cases) {
      const r = await a.request(c.path, { method: c.method });
      assert.equal(r.status, c.status, `${c.method} ${c.path}`);
      if (c.body) assert.equal(await r.text(), c.body);
      assert.equal(r.headers.get('content-security-policy'), CSP);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(r.headers.get('x-frame-options'), 'DENY');
    }
    assert.match(CSP, /default-src 'none'/);
    assert.doesNotMatch(CSP, /script-src/, 'no script source allowed at all (default none)');
  });

  test('API authentication (table)', async () => {
    const a = app();
    const off = app({ auth: undefined });
    const cases: Array<{ desc: string; app: typeof a; headers: Record<string, string>; status: number }> = [
      { desc: 'no credentials', app: a, headers: {}, status: 401 },
      { desc: 'wrong token', app: a, headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}x` }, status: 401 },
      { desc: 'token as Basic', app: a, headers: { authorization: `Basic ${TOKEN}` }, status: 401 },
      { desc: 'right token', app: a, headers: { authorization: `Bearer ${TOKEN}` }, status: 200 },
      { desc: 'lower-case scheme', app: a, headers: { authorization: `bearer ${TOKEN}` }, status: 200 },
      { desc: 'forged session cookie', app: a, headers: { cookie: 'mg_session=eyJ1IjoiYWRtaW4iLCJleHAiOjk5OTk5OTk5OTk5OTl9.AAAA' }, status: 401 },
      { desc: 'auth not configured', app: off, headers: { authorization: `Bearer ${TOKEN}` }, status: 401 },
    ];
    for (const c of cases) {
      const r = await c.app.request('/api/quarantine', { headers: c.headers });
      assert.equal(r.status, c.status, c.desc);
    }
    const disabled = await off.request('/api/quarantine');
    assert.match(((await disabled.json()) as { error: string }).error, /configure admin\.auth/);
  });

  test('console: login CSRF, session CSRF and same-origin checks on state-changing requests', async () => {
    const a = app();
    // A login POST without the form's token/cookie pair is refused.
    const noCsrf = await a.request('/quarantine/login', {
      method: 'POST',
      headers: { host: HOST, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'user=admin&password=s3cret+pass',
    });
    assert.equal(noCsrf.status, 403);
    assert.equal(cookiesOf(noCsrf).mg_session, undefined);
    const { cookie, csrf } = await loginSession(a);
    assert.ok(csrf);
    const post = (origin: string | undefined, token: string | undefined) =>
      a.request('/quarantine/m/NOSUCH/delete', {
        method: 'POST',
        headers: { host: HOST, cookie, 'content-type': 'application/x-www-form-urlencoded', ...(origin ? { origin } : {}) },
        body: token ? `csrf=${encodeURIComponent(token)}` : '',
      });
    const cases = [
      { desc: 'no token', origin: `http://${HOST}`, token: undefined, status: 403 },
      { desc: 'wrong token', origin: `http://${HOST}`, token: `${csrf}x`, status: 403 },
      { desc: 'right token, foreign origin', origin: 'http://evil.example', token: csrf, status: 403 },
      { desc: 'right token, Origin null', origin: 'null', token: csrf, status: 403 },
      { desc: 'right token, same origin', origin: `http://${HOST}`, token: csrf, status: 404 },
    ];
    for (const c of cases) assert.equal((await post(c.origin, c.token)).status, c.status, c.desc);
    // The JSON API with a session cookie needs the token too (header form).
    const apiPost = await a.request('/api/quarantine/NOSUCH/delete', { method: 'POST', headers: { host: HOST, cookie } });
    assert.equal(apiPost.status, 403);
    const apiOk = await a.request('/api/quarantine/NOSUCH/delete', { method: 'POST', headers: { host: HOST, cookie, 'x-csrf-token': csrf } });
    assert.equal(apiOk.status, 404);
    // Bearer calls need no CSRF token (a browser never sends that header by itself).
    assert.equal((await a.request('/api/quarantine/NOSUCH/delete', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  });

  test('hostile message data is escaped in the list and message pages', async () => {
    const a = app();
    const { cookie } = await loginSession(a);
    for (const path of ['/quarantine', '/quarantine/m/EVIL1']) {
      const html = await (await a.request(path, { headers: { host: HOST, cookie } })).text();
      assert.doesNotMatch(html, /<script|<img|<iframe|onerror=alert\(2\)>/i, path);
      assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;|&lt;iframe/, path);
    }
  });

  test('rate limits: requests per client, failed logins', async () => {
    const a = app({ rate_limit: '3/1m' });
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await a.request('/api/quarantine', { headers: { authorization: `Bearer ${TOKEN}` } })).status);
    assert.deepEqual(codes, [200, 200, 200, 429, 429]);
    const r = await a.request('/api/quarantine', { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    assert.equal((await a.request('/healthz')).status, 200, 'health is never rate-limited');

    const b = app({ login_rate_limit: '2/1m' });
    const attempt = async (password: string) => {
      const form = await b.request('/quarantine/login', { headers: { host: HOST } });
      const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())?.[1] as string;
      return (
        await b.request('/quarantine/login', {
          method: 'POST',
          headers: { host: HOST, cookie: `mg_login=${cookiesOf(form).mg_login}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ user: 'admin', password, csrf }).toString(),
        })
      ).status;
    };
    assert.deepEqual([await attempt('x'), await attempt('y'), await attempt('s3cret pass')], [401, 401, 429]);
  });
});

describe('helpers (tables)', () => {
  test('passwords: scrypt hash verifies; wrong or malformed never does', async () => {
    const h = await hashPassword('pw');
    const cases = [
      { pw: 'pw', stored: h, ok: true },
      { pw: 'pW', stored: h, ok: false },
      { pw: 'pw', stored: 'plain', ok: false },
      { pw: 'pw', stored: 'scrypt$99999999$8$1$AA==$AA==', ok: false },
      { pw: 'pw', stored: h.replace(/.$/, 'A'), ok: h.endsWith('A') },
    ];
    for (const c of cases) assert.equal(await verifyPassword(c.pw, c.stored), c.ok, c.stored);
    assert.equal(safeEqual('abc', 'abc'), true);
    assert.equal(safeEqual('abc', 'abd'), false);
    assert.equal(safeEqual('abc', 'abcd'), false);
  });

  test('htmlToPlain: markup dropped, scripts skipped, entities decoded, linear on hostile input', () => {
    const cases = [
      { input: '<p>Hello <b>world</b></p>', expected: 'Hello world' },
      { input: '<script>alert(1)</script>visible', expected: 'visible' },
      { input: '<style>p{}</style><p>a</p><p>b</p>', expected: 'a\nb' },
      { input: 'a &lt;3 &amp; &#65;&#x42; &bogus;', expected: 'a <3 & AB &bogus;' },
      { input: '<img src=x onerror=alert(1)>text', expected: 'text' },
      { input: 'unclosed <tag', expected: 'unclosed' },
    ];
    for (const c of cases) assert.equal(htmlToPlain(c.input), c.expected, c.input);
    const hostile = '<'.repeat(200_000) + '&'.repeat(200_000);
    const t = Date.now();
    htmlToPlain(hostile);
    assert.ok(Date.now() - t < 1000, 'linear time');
    assert.deepEqual(headerFields(Buffer.from('A: 1\r\nB: x\r\n y\r\n\r\nbody')), [
      { name: 'A', value: '1' },
      { name: 'B', value: 'x y' },
    ]);
  });

  test('WindowLimiter resets per window and stays bounded', () => {
    let now = 0;
    const l = new WindowLimiter({ count: 2, periodMs: 1000 }, () => now);
    assert.deepEqual([l.hit('a'), l.hit('a'), l.hit('a') > 0], [0, 0, true]);
    now = 1000;
    assert.equal(l.hit('a'), 0);
    for (let i = 0; i < WindowLimiter.MAX_KEYS + 10; i++) l.hit(`k${i}`);
    assert.equal(l.hit('fresh'), 0);
  });

  test('config keys (table): quarantine and admin', () => {
    const base = { hostname: 'mx.example.test', domains: ['example.test'], backend: { maildir: '/tmp/x' } };
    const ok = configSchema.parse({
      ...base,
      quarantine: { retention: '30d', quota: { max_bytes: '10GB', max_messages: 5000 }, index: { backend: 'postgres', url: 'postgres://q@db/mailgate' } },
    });
    assert.equal(ok.quarantine.retention, 30 * 86_400_000);
    assert.equal(ok.quarantine.quota.max_bytes, 10 * 1024 ** 3);
    assert.equal(ok.quarantine.quota.outcome, 'tempfail');
    assert.equal(ok.quarantine.digest.enabled, false, 'digests off by default');
    const def = configSchema.parse(base);
    assert.deepEqual(def.quarantine.index, { backend: 'sqlite' });
    assert.equal(def.admin !== false && def.admin.host, '127.0.0.1', 'loopback by default');
    const bad = [
      { quarantine: { retention: 'forever' }, path: 'quarantine.retention' },
      { quarantine: { quota: { max_bytes: '10 parsecs' } }, path: 'quarantine.quota.max_bytes' },
      { quarantine: { quota: { outcome: 'drop' } }, path: 'quarantine.quota.outcome' },
      { quarantine: { index: { backend: 'mysql' } }, path: 'quarantine.index.backend' },
      { quarantine: { digest: { hmac_key: 'short' } }, path: 'quarantine.digest.hmac_key' },
      { admin: { auth: { tokens: ['short'] } }, path: 'admin.auth.tokens.0' },
      { admin: { auth: { users: [{ name: 'a', password: 'plaintext' }] } }, path: 'admin.auth.users.0.password' },
      { admin: { rate_limit: 'lots' }, path: 'admin.rate_limit' },
    ];
    for (const c of bad) {
      const r = configSchema.safeParse({ ...base, ...c });
      assert.equal(r.success, false, c.path);
      assert.ok(
        r.error?.issues.some((i) => i.path.join('.') === c.path),
        `${c.path}: ${JSON.stringify(r.error?.issues.map((i) => i.path.join('.')))}`,
      );
    }
    const sizes = [
      { input: '1024', expected: 1024 },
      { input: '1KB', expected: 1024 },
      { input: '1.5 GB', expected: 1.5 * 1024 ** 3 },
      { input: '0', expected: undefined },
      { input: 'GB', expected: undefined },
      { input: '9'.repeat(40), expected: undefined },
    ];
    for (const c of sizes) assert.equal(parseSize(c.input), c.expected, c.input);
  });
});
