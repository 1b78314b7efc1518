// End to end through the CLI: a message the rules quarantine gets 250 and is stored; `quarantine
// list`, `show` and `release` (child processes) deliver it to a private Postfix byte-identical
// apart from the added headers; a second release says "already released" and delivers nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addedHeaders, startQuarantineEnv, type QuarantineEnv } from '../helpers/quarantine-env.ts';

let env: QuarantineEnv;
before(async () => {
  env = await startQuarantineEnv();
});
after(() => env?.close());

test('quarantined via SMTP (250), then CLI list, show, release delivers it byte-identical; second release is refused as already done', async () => {
  const q = await env.quarantine();
  assert.equal(q.code, 250);
  assert.ok(q.id, 'queue id in the 250 reply');
  const day = new Date().toISOString().slice(0, 10);
  const stored = readFileSync(join(env.qdir, day, `${q.id}.eml`));
  assert.ok(stored.includes(q.tok));
  assert.equal(env.delivered('alice', q.tok).length, 0, 'held, not delivered');

  const list = await env.cli(['list']);
  assert.equal(list.code, 0, list.err);
  const lines = list.out.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^ID +RECEIVED +FROM +TO +SCORE +STATUS +REASON$/);
  const row = lines.find((l) => l.startsWith(q.id));
  assert.ok(row, list.out);
  assert.match(row, /<sender@client\.example\.net> +alice@example\.test +\S+ +held +QUARANTINE_ME/);
  // Columns line up under the header.
  assert.equal(row.indexOf('<sender'), (lines[0] as string).indexOf('FROM'));

  const json = JSON.parse((await env.cli(['list', '--json', '--rcpt', '@example.test', '--rule', 'QUARANTINE_ME'])).out) as {
    total: number;
    rows: Array<{ id: string }>;
  };
  assert.deepEqual(
    json.rows.map((r) => r.id),
    [q.id],
  );
  assert.equal((JSON.parse((await env.cli(['list', '--json', '--rule', 'OTHER'])).out) as { total: number }).total, 0);

  const show = await env.cli(['show', q.id]);
  assert.equal(show.code, 0, show.err);
  assert.match(show.out, /^Rules: +QUARANTINE_ME$/m);
  assert.match(show.out, /^Client: +127\.0\.0\.1 \(HELO client\.example\.net/m);
  assert.match(show.out, /^Status: +held$/m);
  // Authentication results and TLS come from the transaction's facts.
  assert.match(show.out, /^Auth: +spf=none; dkim=none; dmarc=none/m);
  assert.match(show.out, /^TLS: +none$/m);
  assert.match(show.out, new RegExp(`^Subject: QUARANTINE-ME ${q.tok}$`, 'm'));
  const raw = await env.cli(['show', q.id, '--raw']);
  assert.equal(Buffer.from(raw.out, 'latin1').compare(stored), 0, 'show --raw prints the stored bytes');

  const rel = await env.cli(['release', q.id, '--by', 'tester']);
  assert.equal(rel.code, 0, rel.err + rel.out);
  assert.match(rel.out, new RegExp(`^${q.id}: released by tester: backend replied 250 2\\.0\\.0 Ok: queued as \\w+`, 'm'));
  const got = await env.waitDelivered('alice', q.tok);
  assert.equal(got.length, 1);
  const added = addedHeaders(got[0] as Buffer, stored);
  if (!added) {
    process.stderr.write('DELIVERED:\n' + (got[0] as Buffer).toString('latin1') + '\nSTORED:\n' + stored.toString('latin1'));
  }
  assert.ok(added, 'delivered = stored bytes with headers added in front');
  assert.ok(added.includes('X-Mailgate-Released'), added.join());
  assert.ok(
    added.every((h) => ['Return-Path', 'X-Original-To', 'Delivered-To', 'Received', 'X-Mailgate-Released'].includes(h)),
    added.join(),
  );

  const again = await env.cli(['release', q.id]);
  assert.equal(again.code, 0);
  assert.match(again.out, new RegExp(`^${q.id}: already released at \\S+ by tester`, 'm'));
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(env.delivered('alice', q.tok).length, 1, 'nothing delivered twice');
  assert.match((await env.cli(['show', q.id])).out, /^Status: +released .* by tester/m);
  assert.match((await env.cli(['list', '--status', 'released'])).out, new RegExp(`^${q.id} .* released `, 'm'));
});

test('release --to delivers to the chosen recipient only; delete removes; missing ids exit 2', async () => {
  const q = await env.quarantine();
  const rel = await env.cli(['release', q.id, '--to', 'bob@example.test']);
  assert.equal(rel.code, 0, rel.out + rel.err);
  assert.equal((await env.waitDelivered('bob', q.tok)).length, 1);
  assert.equal(env.delivered('alice', q.tok).length, 0);
  const q2 = await env.quarantine();
  const del = await env.cli(['delete', q2.id, 'NOSUCHID']);
  assert.equal(del.code, 2);
  assert.match(del.out, new RegExp(`^deleted ${q2.id}$`, 'm'));
  assert.match(del.err, /no message NOSUCHID/);
  assert.equal((await env.cli(['show', q2.id])).code, 2);
  const missing = await env.cli(['release', 'NOSUCHID']);
  assert.equal(missing.code, 2);
});

test('usage errors (table): unknown flags and bad values exit 1 and say why', async () => {
  const cases = [
    { args: ['list', '--bogus'], err: /unknown option --bogus/ },
    { args: ['list', '--status', 'maybe'], err: /--status: expected held, released or all/ },
    { args: ['list', '--since', 'yesterday-ish'], err: /expected a date/ },
    { args: ['purge'], err: /--older-than AGE is required/ },
    { args: ['frobnicate'], err: /unknown subcommand frobnicate/ },
    { args: ['show'], err: /expected one ID/ },
    { args: ['release', 'X', '--to'], err: /--to needs a value/ },
  ];
  for (const c of cases) {
    const r = await env.cli(c.args);
    assert.equal(r.code, 1, `${c.args.join(' ')}: ${r.out}`);
    assert.match(r.err, c.err, c.args.join(' '));
  }
  const help = await env.cli(['--help']);
  assert.match(help.out, /^SYNOPSIS$/m);
  const purge = await env.cli(['purge', '--older-than', '30d']);
  assert.equal(purge.code, 0);
  assert.match(purge.out, /^purged 0 entries older than 30d$/m);
});
