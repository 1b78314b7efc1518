// The quarantine API end to end, once with the node:sqlite index and once with a private
// PostgreSQL: a message the rules quarantine (client got 250) is listed, viewed and released
// over HTTP into a private Postfix, byte-identical apart from added headers; a second release
// says already released; delete; 401 without credentials; /metrics, /healthz, /readyz intact.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addedHeaders, startQuarantineEnv, type QuarantineEnv } from '../helpers/quarantine-env.ts';
import { postgresAvailable, startPostgres, type TestPostgres } from '../helpers/postgres.ts';
import { startGateway, testConfig } from '../helpers/gateway.ts';

const TOKEN = 'test-token-0123456789abcdef0123456789abcdef';
let pg: TestPostgres | undefined;
before(async () => {
  if (postgresAvailable().ok) pg = await startPostgres();
});
after(() => pg?.stop());

for (const backend of ['sqlite', 'postgres'] as const) {
  const avail = backend === 'sqlite' ? { ok: true as const } : postgresAvailable();
  describe(`quarantine API (${backend} index)`, { skip: avail.ok ? false : avail.why }, () => {
    let env: QuarantineEnv;
    let base: string;
    const api = (path: string, init: RequestInit = {}, token: string | null = TOKEN) =>
      fetch(`${base}${path}`, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string>) } });
    before(async () => {
      const index = backend === 'postgres' ? { backend: 'postgres', url: (pg as TestPostgres).url, schema: 'api_e2e' } : { backend: 'sqlite' };
      env = await startQuarantineEnv({ quarantine: { index }, admin: { host: '127.0.0.1', port: 0, auth: { tokens: [TOKEN] } } });
      base = `http://127.0.0.1:${env.gw.adminPort}`;
    });
    after(() => env?.close());

    test('health endpoints unchanged; quarantine gauges in /metrics', async () => {
      const h = await fetch(`${base}/healthz`);
      assert.equal(h.status, 200);
      assert.equal(await h.text(), '{"ok":true}\n');
      const r = await fetch(`${base}/readyz`);
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { ready: boolean }).ready, true);
      assert.equal((await fetch(`${base}/healthz`, { method: 'POST' })).status, 405);
      await env.quarantine();
      const m = await (await fetch(`${base}/metrics`)).text();
      assert.match(m, /^mailgate_quarantine_messages [1-9]\d*$/m);
      assert.match(m, /^mailgate_quarantine_bytes [1-9]\d*$/m);
      assert.match(m, /^mailgate_quarantine_actions_total\{action="quarantine"\} [1-9]\d*$/m);
      assert.equal(h.headers.get('content-security-policy')?.includes("default-src 'none'"), true);
    });

    test('401 without or with wrong credentials', async () => {
      const none = await api('/api/quarantine', {}, null);
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal((await api('/api/quarantine', {}, 'wrong-token-wrong-token-wrong-token-xx')).status, 401);
      assert.equal((await api('/api/quarantine/X/release', { method: 'POST' }, null)).status, 401);
    });

    test('list, view, raw, release (byte-identical delivery), second release refused, delete', async () => {
      const q = await env.quarantine({ subject: 'QUARANTINE-ME api' });
      assert.equal(q.code, 250);
      const list = (await (await api(`/api/quarantine?rcpt=alice@example.test&rule=QUARANTINE_ME&limit=500`)).json()) as {
        total: number;
        rows: Array<{ id: string }>;
      };
      assert.ok(list.rows.some((r) => r.id === q.id));
      const bad = await api('/api/quarantine?min_score=lots');
      assert.equal(bad.status, 400);
      const one = (await (await api(`/api/quarantine/${q.id}`)).json()) as {
        meta: { rules: string[]; client: { ip: string } };
        view: { subject: string; text: string; headers: Array<{ name: string }> };
      };
      assert.deepEqual(one.meta.rules, ['QUARANTINE_ME']);
      assert.equal(one.meta.client.ip, '127.0.0.1');
      assert.match(one.view.subject, /QUARANTINE-ME api/);
      assert.ok(one.view.text.includes(q.tok));
      assert.ok(one.view.headers.some((h) => h.name === 'Authentication-Results'));
      const stored = readFileSync(join(env.qdir, new Date().toISOString().slice(0, 10), `${q.id}.eml`));
      const raw = await api(`/api/quarantine/${q.id}/raw`);
      assert.equal(raw.headers.get('content-type'), 'application/octet-stream');
      assert.match(raw.headers.get('content-disposition') ?? '', /^attachment/);
      assert.equal(Buffer.from(await raw.arrayBuffer()).compare(stored), 0);

      const rel = await api(`/api/quarantine/${q.id}/release`, { method: 'POST' });
      const body = (await rel.json()) as { status: string; reply: string; releasedBy: string };
      assert.equal(rel.status, 200, JSON.stringify(body));
      assert.equal(body.status, 'released');
      assert.match(body.reply, /^250 2\.0\.0 Ok: queued as \w+/);
      assert.equal(body.releasedBy, 'token');
      const got = await env.waitDelivered('alice', q.tok);
      assert.equal(got.length, 1);
      const added = addedHeaders(got[0] as Buffer, stored);
      assert.ok(added && added.includes('X-Mailgate-Released'), String(added));

      const again = await api(`/api/quarantine/${q.id}/release`, { method: 'POST' });
      assert.equal(again.status, 409);
      const a = (await again.json()) as { status: string; releasedBy: string; releasedAt: string };
      assert.equal(a.status, 'already');
      assert.equal(a.releasedBy, 'token');
      assert.ok(a.releasedAt);
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(env.delivered('alice', q.tok).length, 1, 'delivered once');

      const q2 = await env.quarantine();
      const d = await api(`/api/quarantine/${q2.id}`, { method: 'DELETE' });
      assert.equal(d.status, 200);
      assert.equal((await api(`/api/quarantine/${q2.id}`)).status, 404);
      assert.equal((await api(`/api/quarantine/${q2.id}/release`, { method: 'POST' })).status, 404);
    });

    if (backend === 'postgres') {
      test('a second instance sharing the index and volume lists and releases what the first held', async () => {
        const q = await env.quarantine({ subject: 'QUARANTINE-ME shared' });
        const cfg = env.gw.runtime.config;
        const other = await startGateway(
          testConfig({
            backend: cfg.backend,
            quarantine: { dir: env.qdir, index: { backend: 'postgres', url: (pg as TestPostgres).url, schema: 'api_e2e' } },
            admin: { host: '127.0.0.1', port: 0, auth: { tokens: [TOKEN] } },
          }),
        );
        try {
          const b = `http://127.0.0.1:${other.adminPort}`;
          const auth = { authorization: `Bearer ${TOKEN}` };
          const list = (await (await fetch(`${b}/api/quarantine?rule=QUARANTINE_ME&limit=500`, { headers: auth })).json()) as { rows: Array<{ id: string }> };
          assert.ok(
            list.rows.some((r) => r.id === q.id),
            'listed by the other instance',
          );
          const [r1, r2] = await Promise.all([
            fetch(`${b}/api/quarantine/${q.id}/release`, { method: 'POST', headers: auth }),
            api(`/api/quarantine/${q.id}/release`, { method: 'POST' }),
          ]);
          assert.deepEqual([r1.status, r2.status].sort(), [200, 409], 'exactly one instance releases');
          await new Promise((r) => setTimeout(r, 800));
          assert.equal((await env.waitDelivered('alice', q.tok)).length, 1);
        } finally {
          await other.stop(500);
        }
      });
    }

    test('release to chosen recipients (JSON body)', async () => {
      const q = await env.quarantine();
      const rel = await api(`/api/quarantine/${q.id}/release`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: ['carol@example.test'] }),
      });
      assert.equal(rel.status, 200);
      assert.equal((await env.waitDelivered('carol', q.tok)).length, 1);
      assert.equal(env.delivered('alice', q.tok).length, 0);
    });
  });
}
