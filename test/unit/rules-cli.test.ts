// `mailgate rules check|test|diff` on fixtures: exit codes and what a postmaster reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runRulesCommand } from '../../src/cli/rules.ts';
import { Capture, readCapture } from '../../src/rules/capture.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { emptyVerdict } from '../../src/pipeline/verdict.ts';
import { makeRulesDir, writeRules } from '../helpers/rules-dir.ts';

const root = join(import.meta.dirname, '..', '..');
const shipped = join(root, 'rules');
const corpus = join(root, 'test/fixtures/rules/corpus');
const phish = join(root, 'test/fixtures/rules/messages/phish.eml');

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runRulesCommand(args, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

/** A copy of the shipped rules with `files` added (a proposed change). */
function proposed(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-proposed-'));
  cpSync(shipped, dir, { recursive: true });
  writeRules(dir, files);
  return dir;
}

test('cli: --help is a man page', async () => {
  const r = await cli('--help');
  assert.equal(r.code, 0);
  for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'EXIT STATUS', 'EXAMPLES', 'mailgate rules test MESSAGE.eml']) assert.ok(r.out.includes(s), s);
});

test('cli: rules check on the shipped rules', async () => {
  const r = await cli('check', shipped);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /: OK: \d+ rules in \d+ files, 5 list files\n/);
  assert.match(r.out, /by stage: +connect \d+, helo \d+, mail \d+, rcpt \d+, data \d+/);
  assert.match(r.out, /thresholds: reject 15, quarantine 8, tag 5/);
  const v = await cli('check', shipped, '--verbose');
  assert.match(v.out, /data {4}DMARC_REJECT +action reject +20-auth.yaml:\d+/);
});

test('cli: rules check lists every problem as FILE:LINE: KEY: MESSAGE and exits 1', async () => {
  const dir = makeRulesDir({
    '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { spf.reslt: fail }\n    score: 1\n',
    'local.d/x.yaml': 'actions: { reject: never }\n',
  });
  const r = await cli('check', dir);
  assert.equal(r.code, 1);
  assert.equal(r.out, '');
  assert.deepEqual(r.err.trim().split('\n'), [
    `${dir}/10-a.yaml:4: rules[0].when.spf.reslt: unknown fact "spf.reslt"; did you mean "spf.result"? (or a keyword: all, any, not)`,
    `${dir}/local.d/x.yaml:1: actions.reject: expected a score (number), null or false (off), or {score, reply}`,
  ]);
});

test('cli: rules test prints the rules that fired, the result and what it could not see', async () => {
  const r = await cli('test', phish, '--rules', shipped);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /^Message: {2}.*phish.eml \(\d+ bytes\)\nEnvelope: client 203\.0\.113\.9 helo localhost, from <service@paypal.example> to <alice@example.test>\n/,
  );
  assert.match(r.out, /\nhelo {5}HELO_NOT_FQDN {17}\+1 {6}/);
  assert.match(r.out, /\nmail {5}SPF_FAIL {22}\+3 /);
  assert.match(r.out, /\ndata {5}DMARC_REJECT {26}reject {6}20-auth.yaml:\d+\n/);
  assert.match(
    r.out,
    /\nResult: {3}reject at data: 550 5\.7\.1 Message rejected: it fails DMARC authentication and the DMARC policy of paypal\.example is reject\n/,
  );
  assert.match(r.out, /decided by rule DMARC_REJECT@data/);
  assert.match(r.out, /Facts \d+ rules read but this run did not have/);
});

test('cli: rules test options override the sidecar; --fact values are JSON or text', async () => {
  const r = await cli('test', phish, '--rules', shipped, '--fact', 'dmarc.policy=quarantine', '--helo', 'mail.paypal.example', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { action: string; fired: Array<{ rule: string }>; envelope: { helo: string } };
  assert.equal(j.action, 'quarantine');
  assert.equal(j.envelope.helo, 'mail.paypal.example');
  assert.deepEqual(
    j.fired.map((f) => f.rule),
    ['SPF_FAIL', 'DMARC_QUARANTINE', 'MISSING_MESSAGE_ID', 'MISSING_DATE'],
  );
});

test('cli: rules test refuses unknown facts and missing files', async () => {
  const r = await cli('test', phish, '--rules', shipped, '--fact', 'dmark.result=fail');
  assert.equal(r.code, 1);
  assert.match(r.err, /unknown fact dmark.result/);
  assert.equal((await cli('test')).code, 1);
});

test('cli: rules diff on a corpus prints each message whose action changes and why', async () => {
  const stricter = proposed({
    'local.d/50-stricter.yaml': 'actions: { quarantine: 6 }\nrules:\n  - name: DMARC_QUARANTINE\n    action: reject\n',
  });
  const r = await cli('diff', stricter, '--rules', shipped, '--corpus', corpus);
  assert.equal(r.code, 1, r.err);
  assert.match(
    r.out,
    /^dmarc-quarantine\.eml\n {4}quarantine@data → reject@data {3}score 0 → 0\n {4}now decided by rule DMARC_QUARANTINE@data \(was rule DMARC_QUARANTINE@data\)\n {4}reply: 550 5\.7\.1 Message rejected by policy\n/m,
  );
  assert.match(r.out, /Replayed 10 messages from corpus .* 1 would change \(quarantine→reject 1\)\.\n$/);
  const same = await cli('diff', shipped, '--rules', shipped, '--corpus', corpus);
  assert.equal(same.code, 0);
  assert.match(same.out, /0 would change\.\n$/);
});

test('cli: rules diff replays the capture the gateway writes', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mailgate-capture-')), 'capture.jsonl');
  const cap = new Capture({ file, maxEntries: 100 });
  const base: Array<[string, string | number | boolean | string[]]> = [
    ['client.ip', '198.51.100.7'],
    ['helo.name', 'mail.sender.example'],
    ['mail.from', 'a@sender.example'],
    ['mail.from_domain', 'sender.example'],
    ['rcpt.addresses', ['alice@example.test']],
    ['rcpt.count', 1],
    ['message.message_id', '<1@sender.example>'],
    ['message.headers', [{ name: 'Date', value: 'Mon, 1 Jan 2026 00:00:00 +0000' }] as never],
    ['message.body_text', 'secret body'],
  ];
  cap.record(new FactSet(base), emptyVerdict(), 'accept', 'q1');
  cap.record(new FactSet([...base, ['spf.result', 'fail']]), emptyVerdict(), 'accept', 'q2');
  await cap.close();
  const entries = readCapture(file).entries;
  assert.equal(entries.length, 2);
  assert.equal(entries[0]?.facts['message.body_text'], undefined, 'bodies are not captured');

  const blockSpf = proposed({ 'local.d/50-spf.yaml': 'rules:\n  - name: SPF_FAIL\n    action: reject\n' });
  const r = await cli('diff', blockSpf, '--rules', shipped, '--capture', file, '--json');
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out) as {
    replayed: number;
    changed: number;
    messages: Array<{ message: string; before: { action: string }; after: { action: string; stage: string }; rules: string[] }>;
  };
  assert.equal(j.replayed, 2);
  assert.equal(j.changed, 1);
  assert.match(j.messages[0]?.message ?? '', / q2 <a@sender.example> -> alice@example.test$/);
  assert.deepEqual([j.messages[0]?.before.action, j.messages[0]?.after.action, j.messages[0]?.after.stage], ['accept', 'reject', 'mail']);
});

test('cli: the capture is bounded (two rotating files)', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mailgate-capture-')), 'capture.jsonl');
  const cap = new Capture({ file, maxEntries: 10 });
  for (let i = 0; i < 37; i++) cap.record(new FactSet([['client.ip', `192.0.2.${i}`]]), emptyVerdict(), 'accept', String(i));
  await cap.close();
  await new Promise((r) => setTimeout(r, 50));
  const { entries } = readCapture(file);
  assert.ok(entries.length >= 5 && entries.length <= 10, String(entries.length));
  assert.equal(entries[entries.length - 1]?.id, '36', 'the newest entry is kept');
  assert.ok(readFileSync(file, 'utf8').split('\n').filter(Boolean).length <= 5);
});

const cutCases = [
  { desc: 'a long string is cut', input: 'x'.repeat(12), expected: 'x'.repeat(8) },
  { desc: 'a short string is kept', input: 'short', expected: 'short' },
  { desc: 'long items of a list are cut, short ones kept', input: ['y'.repeat(9), 'ok'], expected: ['y'.repeat(8), 'ok'] },
  { desc: 'a list is kept to 500 items', input: Array.from({ length: 600 }, (_, i) => String(i)), expected: Array.from({ length: 500 }, (_, i) => String(i)) },
  {
    desc: 'long fields of records are cut, the rest of the record kept',
    input: [
      { name: 'Subject', value: 'z'.repeat(20) },
      { name: 'To', value: 'a@b' },
    ],
    expected: [
      { name: 'Subject', value: 'z'.repeat(8) },
      { name: 'To', value: 'a@b' },
    ],
  },
  { desc: 'numbers and booleans as they are', input: 42, expected: 42 },
];

test('capture: values longer than maxValueChars are cut in the file, the facts themselves are not touched', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mailgate-capture-')), 'capture.jsonl');
  const cap = new Capture({ file, maxValueChars: 8 });
  const facts = new FactSet(cutCases.map((c, i) => [`test.f${i}`, c.input as never]));
  const before = JSON.stringify(facts.toJSON());
  cap.record(facts, emptyVerdict(), 'accept', 'q1');
  await cap.close();
  assert.equal(JSON.stringify(facts.toJSON()), before, 'the transaction facts are unchanged');
  const got = readCapture(file).entries[0]?.facts ?? {};
  cutCases.forEach((c, i) => assert.deepEqual(got[`test.f${i}`], c.expected, c.desc));
});

test('cli: the capture files of several worker processes are read together, oldest first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-capture-'));
  const a = new Capture({ file: join(dir, 'capture-w1.jsonl') });
  const b = new Capture({ file: join(dir, 'capture-w2.jsonl') });
  a.record(new FactSet([['client.ip', '192.0.2.1']]), emptyVerdict(), 'accept', 'first');
  await new Promise((r) => setTimeout(r, 5));
  b.record(new FactSet([['client.ip', '192.0.2.2']]), emptyVerdict(), 'accept', 'second');
  await new Promise((r) => setTimeout(r, 5));
  a.record(new FactSet([['client.ip', '192.0.2.3']]), emptyVerdict(), 'accept', 'third');
  await Promise.all([a.close(), b.close()]);
  assert.deepEqual(
    readCapture(join(dir, 'capture.jsonl')).entries.map((e) => e.id),
    ['first', 'second', 'third'],
  );
});

test('cli: `mailgate rules` is dispatched by the main command', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'src/cli/main.ts'), 'rules', 'check', shipped]);
  assert.match(stdout, /OK: \d+ rules/);
});
