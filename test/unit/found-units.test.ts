// Table-driven unit tests for the issue 14 "Found" fixes: PROXY v1/v2 parsing, orphan header
// continuations, the transaction strip list, NUL bytes in the spool, the spool directory, XCLIENT
// xtext, and the config checks (proxy_protocol: true, TLS files, risky timeouts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, mkdirSync, mkdtempSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { parse as parseProxy } from '../../src/fronts/smtp/proxy-protocol.ts';
import { parseHeaderBlock, rewriteHeaderBlock, isOrphanContinuation } from '../../src/message/headers.ts';
import { buildTransactionStrip, authservIdOf } from '../../src/message/strip-headers.ts';
import { Spool, stripNul } from '../../src/message/spool.ts';
import { prepareSpoolDir, defaultSpoolDir, SpoolDirError } from '../../src/message/spool-dir.ts';
import { xtext } from '../../src/delivery/backend-client.ts';
import { parseConfig } from '../../src/config/load.ts';
import { checkConfig } from '../../src/config/check-config.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';

// --- PROXY v1 ----------------------------------------------------------------------------------

const v1 = (s: string) => parseProxy(Buffer.from(s, 'latin1'));
const proxyCases: Array<{ desc: string; input: string; expected: 'more' | 'error' | { src: string; port: number } | 'unknown' }> = [
  { desc: 'TCP4', input: 'PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n', expected: { src: '192.0.2.10', port: 40000 } },
  { desc: 'TCP6', input: 'PROXY TCP6 2001:db8::1 ::1 40000 25\r\n', expected: { src: '2001:db8::1', port: 40000 } },
  { desc: 'UNKNOWN', input: 'PROXY UNKNOWN\r\n', expected: 'unknown' },
  { desc: 'incomplete', input: 'PROXY TCP4 192.0.2.10', expected: 'more' },
  { desc: 'bare LF injected into the source field', input: 'PROXY TCP4 1.2.3.4\nX-Injected: yes 127.0.0.1 1 25\r\n', expected: 'error' },
  { desc: 'bare LF injected into the source field, six fields', input: 'PROXY TCP4 1.2.3.4\nX-Injected:yes 127.0.0.1 1 25\r\n', expected: 'error' },
  { desc: 'CR inside a field', input: 'PROXY TCP4 1.2.3.4\r 127.0.0.1 1 25\r\n', expected: 'error' },
  { desc: 'source not an IP', input: 'PROXY TCP4 evil.example 127.0.0.1 1 25\r\n', expected: 'error' },
  { desc: 'IPv6 under TCP4', input: 'PROXY TCP4 2001:db8::1 127.0.0.1 1 25\r\n', expected: 'error' },
  { desc: 'IPv4 under TCP6', input: 'PROXY TCP6 192.0.2.1 ::1 1 25\r\n', expected: 'error' },
  { desc: 'destination not an IP', input: 'PROXY TCP4 192.0.2.1 x 1 25\r\n', expected: 'error' },
  { desc: 'port with a sign', input: 'PROXY TCP4 192.0.2.1 127.0.0.1 +1 25\r\n', expected: 'error' },
  { desc: 'port too big', input: 'PROXY TCP4 192.0.2.1 127.0.0.1 65536 25\r\n', expected: 'error' },
  { desc: 'destination port not a number', input: 'PROXY TCP4 192.0.2.1 127.0.0.1 1 x\r\n', expected: 'error' },
  { desc: 'non-ASCII byte', input: 'PROXY TCP4 192.0.2.1 127.0.0.1 1 25\xe9\r\n', expected: 'error' },
  { desc: 'longer than 107 bytes with CRLF', input: `PROXY TCP4 192.0.2.1 127.0.0.1 1 25${' '.repeat(80)}\r\n`, expected: 'error' },
  { desc: '107 bytes without CRLF yet', input: `PROXY TCP4 ${'1'.repeat(96)}`, expected: 'error' },
  { desc: 'not PROXY', input: 'EHLO x\r\n', expected: 'error' },
  { desc: 'double space', input: 'PROXY TCP4  192.0.2.1 127.0.0.1 1 25\r\n', expected: 'error' },
];
for (const c of proxyCases) {
  test(`PROXY v1: ${c.desc}`, () => {
    const r = v1(c.input);
    if (c.expected === 'more') assert.equal(r, 'more');
    else if (c.expected === 'error') assert.ok(r instanceof Error, `expected an error, got ${JSON.stringify(r)}`);
    else if (c.expected === 'unknown') assert.deepEqual(r, { info: {}, length: c.input.length });
    else {
      assert.ok(r !== 'more' && !(r instanceof Error), String(r));
      assert.equal(r.info.sourceAddress, c.expected.src);
      assert.equal(r.info.sourcePort, c.expected.port);
    }
  });
}

test('PROXY v2 TCP4: address from the binary header', () => {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const body = Buffer.from([192, 0, 2, 7, 127, 0, 0, 1, 0x9c, 0x40, 0, 25]);
  const hdr = Buffer.concat([sig, Buffer.from([0x21, 0x11, 0, body.length]), body]);
  const r = parseProxy(hdr);
  assert.ok(r !== 'more' && !(r instanceof Error));
  assert.deepEqual(r.info, { sourceAddress: '192.0.2.7', sourcePort: 40000 });
});

// --- orphan continuation (item 2) ---------------------------------------------------------------

const orphanCases = [
  { desc: 'space-led first line', block: ' dkim=pass header.d=paypal.com; dmarc=pass\r\nFrom: a@b.example\r\n\r\n' },
  { desc: 'tab-led first line with its own fold', block: '\tdkim=pass\r\n header.d=paypal.com\r\nSubject: x\r\n\r\n' },
  { desc: 'space-led line that has a colon', block: ' Authentication-Results: mx.example.test; dkim=pass\r\nFrom: a@b.example\r\n\r\n' },
];
for (const c of orphanCases) {
  test(`orphan continuation dropped: ${c.desc}`, () => {
    const fields = parseHeaderBlock(Buffer.from(c.block));
    assert.equal(fields[0]?.name, '');
    assert.ok(isOrphanContinuation(fields[0]!));
    const out = rewriteHeaderBlock(fields, true, [{ name: 'Authentication-Results', value: 'mx.example.test; spf=none' }], []).toString('latin1');
    const lines = out.split('\r\n');
    assert.equal(lines[0], 'Authentication-Results: mx.example.test; spf=none');
    assert.ok(!/^[ \t]/.test(lines[1] ?? ''), `second line continues ours: ${JSON.stringify(lines[1])}`);
    assert.ok(!out.includes('dkim=pass'));
  });
}

test('ordinary folded fields are kept byte for byte', () => {
  const block = 'Subject: a\r\n b\r\nFrom: x@y.example\r\n\r\n';
  assert.equal(rewriteHeaderBlock(parseHeaderBlock(Buffer.from(block)), true, [], []).toString('latin1'), block);
});

// --- strip list (item 4) ------------------------------------------------------------------------

const strip = buildTransactionStrip({ authservIds: ['mx.example.test'], globs: ['X-Custom-*'] });
const stripCases = [
  { name: 'Authentication-Results', value: 'mx.example.test; dkim=pass', expected: true },
  { name: 'authentication-results', value: ' MX.Example.Test. ; dkim=pass', expected: true },
  { name: 'Authentication-Results', value: '(comment) mx.example.test; dkim=pass', expected: true },
  { name: 'Authentication-Results', value: '"mx.example.test"; dkim=pass', expected: true },
  { name: 'Authentication-Results', value: 'mx.example.test 1; dkim=pass', expected: true },
  { name: 'Authentication-Results', value: 'other.example; dkim=pass', expected: false },
  { name: 'ARC-Authentication-Results', value: 'i=1; mx.example.test; dkim=pass', expected: false },
  { name: 'X-Spam-Flag', value: 'NO', expected: true },
  { name: 'x-spam-score', value: '-100', expected: true },
  { name: 'X-Mailgate-Status', value: 'clean', expected: true },
  { name: 'X-Mailgate-DMARC', value: 'pass', expected: true },
  { name: 'X-Custom-Thing', value: '1', expected: true },
  { name: 'X-Spamassassin', value: '1', expected: false },
  { name: 'Subject', value: 'X-Spam-Flag', expected: false },
];
for (const c of stripCases) {
  test(`strip ${c.name}: ${c.value} → ${c.expected}`, () => {
    assert.equal(strip(c.name, c.value), c.expected);
  });
}
test('authservIdOf', () => {
  assert.equal(authservIdOf('  ( a ( nested ) ) host.example ;x'), 'host.example');
  assert.equal(authservIdOf('"q\\"x"; y'), 'q"x');
  assert.equal(authservIdOf(''), '');
});

// --- NUL bytes (item 9) -------------------------------------------------------------------------

const limits = { maxBytes: 1 << 20, maxHeaderBytes: 1 << 16, maxLineBytes: 1000, memoryBytes: 1 << 20, tmpDir: tmpdir() };
async function spoolOf(chunks: string[], nulBytes: 'strip' | 'reject'): Promise<Spool> {
  const s = new Spool(limits, true, { nulBytes });
  await pipeline(Readable.from(chunks.map((c) => Buffer.from(c, 'latin1'))), s);
  return s;
}
async function text(s: Spool): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s.stream()) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('latin1');
}
const nulCases = [
  { desc: 'NUL in the body', chunks: ['Subject: x\r\n\r\na\0b\r\n'], stored: 'Subject: x\r\n\r\nab\r\n' },
  { desc: 'NUL between CR and LF', chunks: ['Subject: x\r\n\r\na\r\0\nb\r\n'], stored: 'Subject: x\r\n\r\na\r\nb\r\n' },
  { desc: 'chunk of only NULs after a CR', chunks: ['Subject: x\r\n\r\na\r', '\0\0', '\nb\r\n'], stored: 'Subject: x\r\n\r\na\r\nb\r\n' },
  { desc: 'NUL in a header name', chunks: ['Sub\0ject: x\r\n\r\nb\r\n'], stored: 'Subject: x\r\n\r\nb\r\n' },
];
for (const c of nulCases) {
  test(`NUL strip: ${c.desc}`, async () => {
    const s = await spoolOf(c.chunks, 'strip');
    assert.equal(s.problem, undefined);
    assert.equal(s.nulBytes, true);
    assert.equal(s.bareNewlines, false);
    assert.equal(await text(s), c.stored);
  });
  test(`NUL reject: ${c.desc}`, async () => {
    const s = await spoolOf(c.chunks, 'reject');
    assert.equal(s.problem, 'nul-byte');
  });
}
test('no NUL: flag stays false', async () => {
  const s = await spoolOf(['Subject: x\r\n\r\nb\r\n'], 'reject');
  assert.equal(s.nulBytes, false);
  assert.equal(s.problem, undefined);
});
test('stripNul', () => {
  assert.deepEqual(stripNul(Buffer.from([0, 1, 0, 0, 2, 0])), Buffer.from([1, 2]));
});

// --- spool directory (item 10) ------------------------------------------------------------------

test('prepareSpoolDir creates 0700 and removes leftovers of dead processes only', () => {
  const base = mkdtempSync(join(tmpdir(), 'mailgate-spooldir-'));
  const dir = join(base, 'var', 'spool');
  prepareSpoolDir(dir);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  writeFileSync(join(dir, 'spool-999999999-dead'), 'x');
  writeFileSync(join(dir, `spool-${process.ppid}-alive`), 'x');
  writeFileSync(join(dir, 'not-ours'), 'x');
  chmodSync(dir, 0o755);
  const r = prepareSpoolDir(dir);
  assert.equal(r.removed, 1);
  assert.deepEqual(readdirSync(dir).sort(), ['not-ours', `spool-${process.ppid}-alive`].sort());
  assert.equal(statSync(dir).mode & 0o777, 0o700);
});
test('prepareSpoolDir refuses a symlink and a file', () => {
  const base = mkdtempSync(join(tmpdir(), 'mailgate-spooldir-'));
  mkdirSync(join(base, 'real'));
  symlinkSync(join(base, 'real'), join(base, 'link'));
  assert.throws(() => prepareSpoolDir(join(base, 'link')), SpoolDirError);
  writeFileSync(join(base, 'file'), '');
  assert.throws(() => prepareSpoolDir(join(base, 'file')));
});
test('default spool dir is beside the quarantine', () => {
  assert.equal(defaultSpoolDir('/srv/mailgate/var/quarantine'), '/srv/mailgate/var/spool');
});

// --- XCLIENT xtext (item 7) ---------------------------------------------------------------------

const xtextCases = [
  { input: 'mail.example.com', expected: 'mail.example.com' },
  { input: 'a+b=c', expected: 'a+2Bb+3Dc' },
  { input: 'a b', expected: 'a+20b' },
  { input: 'bücher.example', expected: 'b+C3+BCcher.example' },
  { input: '日', expected: '+E6+97+A5' },
  { input: '😀', expected: '+F0+9F+98+80' },
  { input: '[UNAVAILABLE]', expected: '[UNAVAILABLE]' },
];
for (const c of xtextCases) {
  test(`xtext ${JSON.stringify(c.input)} → ${c.expected}`, () => assert.equal(xtext(c.input), c.expected));
}

// --- config (items 3, 11, 12) -------------------------------------------------------------------

const BASE = 'hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: 10025 }\n';
const configCases = [
  {
    desc: 'proxy_protocol: true is refused, naming the key',
    yaml: `${BASE}listen:\n  - port: 25\n    proxy_protocol: true\n`,
    error: /x\.yaml:6: listen\[0\]\.proxy_protocol: true would trust every peer/,
  },
  {
    desc: 'proxy_protocol entry not an address',
    yaml: `${BASE}listen:\n  - port: 25\n    proxy_protocol: [lb.example]\n`,
    error: /x\.yaml:6: listen\[0\]\.proxy_protocol\[0\]: expected an IP address or CIDR/,
  },
  {
    desc: 'proxy_protocol CIDR out of range',
    yaml: `${BASE}listen:\n  - port: 25\n    proxy_protocol: [10.0.0.0/33]\n`,
    error: /proxy_protocol\[0\]: expected an IP address or CIDR/,
  },
  { desc: 'nul_bytes unknown value', yaml: `${BASE}smtp: { nul_bytes: keep }\n`, error: /smtp\.nul_bytes/ },
];
for (const c of configCases) {
  test(`config: ${c.desc}`, () => {
    assert.throws(
      () => parseConfig('x.yaml', c.yaml, {}),
      (err: unknown) => err instanceof SourceErrors && c.error.test(err.message),
    );
  });
}
test('config: a list of load balancers is accepted', () => {
  const { config } = parseConfig('x.yaml', `${BASE}listen:\n  - port: 25\n    proxy_protocol: [10.0.0.5, 2001:db8::/32]\n`, {});
  assert.deepEqual(config.listen[0]?.proxy_protocol, ['10.0.0.5', '2001:db8::/32']);
});
test('config: new keys have their defaults', () => {
  const { config } = parseConfig('x.yaml', BASE, {});
  assert.equal(config.smtp.nul_bytes, 'strip');
  assert.equal(config.smtp.tls_handshake_timeout_ms, 10_000);
  assert.equal(config.limits.max_session_s, 3600);
  assert.equal(config.limits.max_junk_commands, 100);
  assert.equal(config.spool_dir, undefined);
  assert.ok(config.backend && !('maildir' in config.backend) && config.backend.write_timeout_ms === 30_000);
});
test('config: spool_dir is resolved against the config file', () => {
  const { config } = parseConfig('/etc/mailgate/mailgate.yaml', `${BASE}spool_dir: spool\n`, {});
  assert.equal(config.spool_dir, '/etc/mailgate/spool');
});

test('config check: missing TLS files are errors, risky settings warnings, each FILE:LINE: KEY', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-cfg-'));
  const file = join(dir, 'mailgate.yaml');
  writeFileSync(
    file,
    'hostname: mx.example.test\nlisten:\n  - port: 25\n    tls:\n      key: missing-key.pem\n      cert: missing-cert.pem\n    proxy_protocol: [0.0.0.0/0]\n' +
      'domains: [example.test]\nbackend:\n  host: 127.0.0.1\n  data_timeout_ms: 600000\n',
  );
  const { config } = parseConfig(file, readFileSync(file, 'utf8'), {});
  const f = checkConfig(file, config);
  assert.deepEqual(
    f.errors.map((e) => e.message),
    [`${file}:5: listen[0].tls.key: cannot read ${dir}/missing-key.pem: ENOENT`, `${file}:6: listen[0].tls.cert: cannot read ${dir}/missing-cert.pem: ENOENT`],
  );
  assert.equal(f.warnings.length, 2);
  assert.match(f.warnings[0]!.message, new RegExp(`^${file}:7: listen\\[0\\]\\.proxy_protocol\\[0\\]: warning: 0\\.0\\.0\\.0/0 trusts every peer`));
  assert.match(f.warnings[1]!.message, new RegExp(`^${file}:11: backend\\.data_timeout_ms: warning: 600000 ms is not below the 600000 ms clients wait`));
  writeFileSync(join(dir, 'missing-key.pem'), 'k');
  writeFileSync(join(dir, 'missing-cert.pem'), 'c');
  assert.equal(checkConfig(file, config).errors.length, 0);
  assert.ok(existsSync(file));
});

// --- regressions found by fuzzing ---------------------------------------------------------------

const aliasCases = [
  { desc: 'alias to an anchor never defined', yaml: 'hostname: *a\n' },
  { desc: 'merge key with an unresolved alias', yaml: 'hostname: x\n<<: *a\n' },
  { desc: 'alias before its anchor', yaml: 'hostname: *h\ndomains: &h [x]\n' },
];
for (const c of aliasCases) {
  test(`config: ${c.desc} is a located YAML error, not a ReferenceError`, () => {
    assert.throws(
      () => parseConfig('x.yaml', c.yaml, {}),
      (err: unknown) => err instanceof SourceErrors && /^x\.yaml:\d+: YAML error: /.test(err.message),
    );
  });
}

test('config check: an admin listener off loopback is warned about', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-cfg-'));
  const file = join(dir, 'mailgate.yaml');
  writeFileSync(file, `${BASE}admin: { host: 0.0.0.0, port: 9025 }\n`);
  const { config } = parseConfig(file, readFileSync(file, 'utf8'), {});
  const w = checkConfig(file, config).warnings.map((x) => x.message);
  assert.deepEqual(w, [
    `${file}:4: admin.host: warning: 0.0.0.0 is not a loopback address: /metrics and /readyz have no authentication, keep them on 127.0.0.1 or behind a firewall`,
  ]);
  writeFileSync(file, `${BASE}admin: { host: 127.0.0.1, port: 9025 }\n`);
  assert.deepEqual(checkConfig(file, parseConfig(file, readFileSync(file, 'utf8'), {}).config).warnings, []);
});
