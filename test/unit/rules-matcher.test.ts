// Table-driven tests of the condition language: every operator on every fact type, combinators,
// missing facts, list files, dynamic header facts, and the errors each misuse gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FactSet, type FactValue, type FactSpec } from '../../src/pipeline/facts.ts';
import { compileCondition } from '../../src/rules/condition.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';

const extra: FactSpec[] = [{ name: 'test.records', stage: 'data', type: 'records', fields: ['result', 'domain', 'bits'], description: 'test records' }];
const facts = knownFacts(extra);
const listDir = mkdtempSync(join(tmpdir(), 'mailgate-matcher-'));
writeFileSync(join(listDir, 'ips.txt'), '# blocked\n192.0.2.0/24\n2001:db8::/32   # docs\n\n198.51.100.7\n');
writeFileSync(join(listDir, 'domains.txt'), 'spam.example\n*.bulk.example\n/^x[0-9]+\\.example$/i\n');

const base: Record<string, FactValue> = {
  'client.ip': '192.0.2.10',
  'client.rdns': 'mail.example.com',
  'helo.name': 'mail.example.com',
  tls: true,
  'mail.from': 'Alice@Example.COM',
  'mail.from_domain': 'example.com',
  'mail.size_declared': 2048,
  'rcpt.addresses': ['bob@example.test', 'carol@example.test'],
  'rcpt.count': 2,
  'spf.result': 'softfail',
  'message.subject': 'Cheap VIAGRA now',
  'message.headers': [
    { name: 'Subject', value: 'Cheap VIAGRA now' },
    { name: 'X-Mailer', value: '=?utf-8?B?QnVsa01haWxlciAyLjA=?=' },
    { name: 'Received', value: 'from a' },
    { name: 'Received', value: 'from b' },
  ],
  'message.body_text': 'Hello,\nclick here to claim your prize\n',
  'test.records': [
    { result: 'fail', domain: 'other.example', bits: 1024 },
    { result: 'pass', domain: 'example.com', bits: 2048 },
  ],
};

interface Case {
  desc: string;
  when: unknown;
  expected: boolean;
  with?: Record<string, FactValue | undefined>;
}

const cases: Case[] = [
  // equality and lists
  { desc: 'string equality is case-insensitive', when: { 'mail.from_domain': 'EXAMPLE.com' }, expected: true },
  { desc: 'string equality mismatch', when: { 'mail.from_domain': 'example.org' }, expected: false },
  { desc: 'list = any of', when: { 'spf.result': ['fail', 'softfail'] }, expected: true },
  { desc: 'in: operator', when: { 'spf.result': { in: ['fail', 'permerror'] } }, expected: false },
  { desc: 'boolean', when: { tls: true }, expected: true },
  { desc: 'boolean false', when: { tls: false }, expected: false },
  { desc: 'number equality', when: { 'rcpt.count': 2 }, expected: true },
  // numeric comparisons
  { desc: 'gt', when: { 'mail.size_declared': { gt: 1000 } }, expected: true },
  { desc: 'gte boundary', when: { 'mail.size_declared': { gte: 2048 } }, expected: true },
  { desc: 'lt', when: { 'mail.size_declared': { lt: 2048 } }, expected: false },
  { desc: 'range: several operators are all required', when: { 'rcpt.count': { gte: 2, lte: 5 } }, expected: true },
  // globs, regex, contains, domains
  { desc: 'glob on an address', when: { 'mail.from': { glob: '*@example.com' } }, expected: true },
  { desc: 'glob list, none matches', when: { 'mail.from': { glob: ['*@example.org', 'bob@*'] } }, expected: false },
  { desc: 'regex with flags', when: { 'message.subject': { regex: '/viagra/i' } }, expected: true },
  { desc: 'bare regex is case-sensitive', when: { 'message.subject': { regex: 'viagra' } }, expected: false },
  { desc: 'contains on a string is a substring (case-insensitive)', when: { 'message.subject': { contains: 'viagra' } }, expected: true },
  { desc: 'contains on a list is element equality', when: { 'rcpt.addresses': { contains: 'BOB@example.test' } }, expected: true },
  { desc: 'contains on a list does not match substrings', when: { 'rcpt.addresses': { contains: 'bob' } }, expected: false },
  { desc: 'in_domain matches the domain itself', when: { 'mail.from_domain': { in_domain: 'example.com' } }, expected: true },
  { desc: 'in_domain matches subdomains', when: { 'client.rdns': { in_domain: 'example.com' } }, expected: true },
  { desc: 'in_domain takes the domain of an address', when: { 'mail.from': { in_domain: 'example.com' } }, expected: true },
  { desc: 'in_domain does not match a suffix that is not a label', when: { 'mail.from_domain': { in_domain: 'ample.com' } }, expected: false },
  { desc: 'list fact: glob matches any element', when: { 'rcpt.addresses': { glob: 'carol@*' } }, expected: true },
  // IPs
  { desc: 'CIDR', when: { 'client.ip': { cidr: '192.0.2.0/24' } }, expected: true },
  { desc: 'CIDR list, no match', when: { 'client.ip': { cidr: ['10.0.0.0/8', '2001:db8::/32'] } }, expected: false },
  { desc: 'IP equality accepts a CIDR', when: { 'client.ip': '192.0.2.0/28' }, expected: true },
  {
    desc: 'IPv4-mapped IPv6 client matches an IPv4 CIDR',
    when: { 'client.ip': { cidr: '192.0.2.0/24' } },
    with: { 'client.ip': '::ffff:192.0.2.10' },
    expected: true,
  },
  { desc: 'IPv6 spelled differently', when: { 'client.ip': '2001:DB8:0:0::1' }, with: { 'client.ip': '2001:db8::1' }, expected: true },
  // list files
  { desc: 'in_list IP file with CIDR', when: { 'client.ip': { in_list: 'ips.txt' } }, expected: true },
  { desc: 'in_list IP file, IPv6 entry', when: { 'client.ip': { in_list: 'ips.txt' } }, with: { 'client.ip': '2001:db8:1::5' }, expected: true },
  { desc: 'in_list IP file, not listed', when: { 'client.ip': { in_list: 'ips.txt' } }, with: { 'client.ip': '203.0.113.1' }, expected: false },
  {
    desc: 'in_list string file: exact',
    when: { 'mail.from_domain': { in_list: 'domains.txt' } },
    with: { 'mail.from_domain': 'SPAM.example' },
    expected: true,
  },
  {
    desc: 'in_list string file: glob',
    when: { 'mail.from_domain': { in_list: 'domains.txt' } },
    with: { 'mail.from_domain': 'a.bulk.example' },
    expected: true,
  },
  { desc: 'in_list string file: regex', when: { 'mail.from_domain': { in_list: 'domains.txt' } }, with: { 'mail.from_domain': 'X42.example' }, expected: true },
  { desc: 'in_list string file: no match', when: { 'mail.from_domain': { in_list: 'domains.txt' } }, expected: false },
  // records
  { desc: 'has: one record matches every field', when: { 'test.records': { has: { result: 'pass', domain: 'example.com' } } }, expected: true },
  { desc: 'has: fields must match in the same record', when: { 'test.records': { has: { result: 'pass', domain: 'other.example' } } }, expected: false },
  { desc: 'has: numeric comparison on a field', when: { 'test.records': { has: { bits: { lt: 2048 } } } }, expected: true },
  { desc: 'count of records', when: { 'test.records': { count: { gte: 2 } } }, expected: true },
  { desc: 'count of a list', when: { 'rcpt.addresses': { count: 3 } }, expected: false },
  {
    desc: 'message.headers by glob name and regex value',
    when: { 'message.headers': { has: { name: { glob: 'x-*' }, value: { regex: '/^=\\?utf-8\\?/' } } } },
    expected: true,
  },
  // dynamic header facts
  { desc: 'header.<Name> is case-insensitive and decoded', when: { 'header.x-mailer': { glob: 'BulkMailer*' } }, expected: true },
  { desc: 'header.<Name> sees every occurrence', when: { 'header.Received': { count: 2 } }, expected: true },
  { desc: 'absent header', when: { 'header.Date': { exists: false } }, expected: true },
  // body
  { desc: 'body regex', when: { 'message.body_text': { regex: '/claim (your|the) prize/i' } }, expected: true },
  // exists and missing facts
  { desc: 'exists true', when: { 'spf.result': { exists: true } }, expected: true },
  { desc: 'missing fact never equals', when: { 'dmarc.result': 'fail' }, expected: false },
  { desc: 'matcher-level not needs the fact', when: { 'dmarc.result': { not: 'pass' } }, expected: false },
  { desc: 'matcher-level not on a present fact', when: { 'spf.result': { not: 'pass' } }, expected: true },
  { desc: 'condition-level not is plain negation (missing fact)', when: { not: { 'dmarc.result': 'pass' } }, expected: true },
  // combinators
  { desc: 'several facts in one map: all', when: { 'spf.result': 'softfail', tls: false }, expected: false },
  { desc: 'any', when: { any: [{ tls: false }, { 'rcpt.count': { gt: 1 } }] }, expected: true },
  { desc: 'all', when: { all: [{ tls: true }, { 'rcpt.count': { gt: 5 } }] }, expected: false },
  { desc: 'a list is all', when: [{ tls: true }, { 'spf.result': 'softfail' }], expected: true },
  {
    desc: 'nested',
    when: { any: [{ not: { tls: true } }, { all: [{ 'client.ip': { cidr: '192.0.2.0/24' } }, { 'mail.from': { glob: 'alice@*' } }] }] },
    expected: true,
  },
];

for (const c of cases) {
  test(`match: ${c.desc}`, () => {
    const fs = new FactSet(Object.entries(base));
    for (const [k, v] of Object.entries(c.with ?? {})) {
      if (v === undefined) fs.delete(k);
      else fs.set(k, v);
    }
    const cond = compileCondition(c.when, { facts, baseDir: listDir });
    assert.equal(cond.test(fs), c.expected);
  });
}

interface ErrorCase {
  desc: string;
  when: unknown;
  message: RegExp;
}

const errors: ErrorCase[] = [
  { desc: 'unknown fact with a suggestion', when: { 'spf.reslt': 'pass' }, message: /unknown fact "spf.reslt"; did you mean "spf.result"/ },
  { desc: 'value not among the fact values', when: { 'spf.result': 'fial' }, message: /"fial" is not a value of spf.result \(expected one of: pass, fail/ },
  { desc: 'numeric operator on a string', when: { 'mail.from': { gt: 3 } }, message: /"gt" does not apply to string fact mail.from/ },
  { desc: 'CIDR on a string fact', when: { 'mail.from': { cidr: '10.0.0.0/8' } }, message: /"cidr" does not apply/ },
  { desc: 'bad CIDR', when: { 'client.ip': { cidr: '10.0.0.0/33' } }, message: /"10.0.0.0\/33" is not an IP address or CIDR block/ },
  { desc: 'bad regex', when: { 'message.subject': { regex: '/(unclosed/' } }, message: /invalid regex/ },
  { desc: 'stateful regex flags', when: { 'message.subject': { regex: '/x/g' } }, message: /flags "g" not allowed/ },
  { desc: 'unknown operator', when: { 'mail.from': { matches: 'x' } }, message: /unknown operator "matches"; expected one of is, in/ },
  { desc: 'boolean fact given a string', when: { tls: 'yes' }, message: /tls is true or false/ },
  { desc: 'number fact given a string', when: { 'rcpt.count': 'two' }, message: /rcpt.count is a number/ },
  {
    desc: 'record field that does not exist',
    when: { 'test.records': { has: { reslt: 'pass' } } },
    message: /records have no field "reslt" \(fields: result, domain, bits\)/,
  },
  { desc: 'scalar operator on records', when: { 'test.records': 'pass' }, message: /list of records .* "has: \{field: value, \.\.\.\}"/ },
  { desc: 'missing list file', when: { 'mail.from': { in_list: 'nope.txt' } }, message: /list file .*nope.txt does not exist/ },
  { desc: 'null value', when: { 'spf.result': null }, message: /use "exists: false"/ },
  { desc: 'empty condition', when: {}, message: /empty condition/ },
  { desc: 'any needs a list', when: { any: { tls: true } }, message: /expected a non-empty list of conditions/ },
  { desc: 'count on a single value', when: { 'mail.from': { count: 1 } }, message: /"count" applies to list and record facts/ },
];

for (const c of errors) {
  test(`error: ${c.desc}`, () => {
    assert.throws(
      () => compileCondition(c.when, { facts, baseDir: listDir, file: 'x.yaml' }),
      (err: unknown) => err instanceof SourceErrors && c.message.test(err.message),
    );
  });
}

test('a broken IP list names the list file and line', () => {
  writeFileSync(join(listDir, 'bad-ips.txt'), '192.0.2.1\n\n# fine\nnot-an-ip\n');
  assert.throws(
    () => compileCondition({ 'client.ip': { in_list: 'bad-ips.txt' } }, { facts, baseDir: listDir }),
    (err: unknown) => err instanceof SourceErrors && /bad-ips.txt:4: "not-an-ip" is not an IP address/.test(err.message),
  );
});

test('compileCondition reports facts read, lists used and the stage', () => {
  const c = compileCondition({ any: [{ 'client.ip': { in_list: 'ips.txt' } }, { 'header.X-Foo': { exists: true } }] }, { facts, baseDir: listDir });
  assert.deepEqual([...c.facts].sort(), ['client.ip', 'header.X-Foo']);
  assert.equal(c.stage, 'data');
  assert.deepEqual([...c.lists], [join(listDir, 'ips.txt')]);
});
