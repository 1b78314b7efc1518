// `mailgate doctor` against private Postfix instances: a lenient one (ends DATA at <LF>.<LF>, like
// many deployed MTAs) and one that relays for mailgate's address; each finding is reported with
// the backend's own answer and mailgate's mitigation.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { probeBackend, runDoctor, type ProbeResult } from '../../src/cli/doctor.ts';

const instances: PostfixInstance[] = [];
after(() => {
  for (const p of instances) p.destroy();
});

const byName = (rs: ProbeResult[], prefix: string) => {
  const r = rs.find((x) => x.probe.startsWith(prefix));
  assert.ok(r, `no probe ${prefix}`);
  return r;
};

test('doctor: a lenient backend that ends DATA at <LF>.<LF> is reported dangerous, and mitigated', async () => {
  const pf = await startPostfix({ main: { smtpd_forbid_bare_newline: 'no' } });
  instances.push(pf);
  const rs = await probeBackend({ host: '127.0.0.1', port: pf.port, helo: 'mx.example.test', rcpt: 'alice@example.test', bareNewlines: 'normalize' });
  assert.equal(rs.length, 7);
  const lf = byName(rs, 'bare LF');
  assert.equal(lf.dangerous, true, lf.backend);
  assert.match(lf.backend, /^ends DATA at this sequence \(answered "250 /);
  assert.match(lf.mailgate, /normalize/);
  const cr = byName(rs, 'bare CR');
  assert.equal(cr.dangerous, false, cr.backend);
  assert.equal(byName(rs, 'percent hack').dangerous, false);
  assert.equal(byName(rs, 'relay').dangerous, false);
  for (const r of rs) assert.equal(r.mitigated, true);
});

test("doctor: a backend that relays for mailgate's address is reported, with the domain check as mitigation", async () => {
  // discard: nothing can leave this machine even though Postfix now relays for 127.0.0.1.
  const pf = await startPostfix({ main: { default_transport: 'discard:', relay_transport: 'discard:' } });
  instances.push(pf);
  const rs = await probeBackend({ host: '127.0.0.1', port: pf.port, helo: 'mx.example.test', rcpt: 'alice@example.test', bareNewlines: 'reject' });
  const relay = byName(rs, 'relay');
  assert.equal(relay.dangerous, true, relay.backend);
  assert.match(relay.backend, /^accepts RCPT TO:<alice@doctor\.invalid>/);
  assert.match(relay.mailgate, /only the configured domains/);
  assert.match(byName(rs, 'bare LF').mailgate, /reject/);
});

test('doctor CLI: table output, exit 0 when everything dangerous is mitigated; usage errors exit 1', async () => {
  const pf = instances[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-doctor-'));
  const cfg = join(dir, 'mailgate.yaml');
  writeFileSync(cfg, `hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: ${pf.port} }\n`);
  let out = '';
  let err = '';
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
  assert.equal(await runDoctor(['--config', cfg, '--rcpt', 'alice@example.test'], io), 0, err);
  assert.match(out, /^bare LF end of data <LF>\.<LF>\n {2}backend: {2}ends DATA at this sequence/);
  assert.match(out, /verdict: {2}DANGEROUS, mitigated/);
  assert.equal(await runDoctor(['--config', cfg, 'extra'], io), 1);
  assert.match(err, /unexpected argument extra/);
});

test('doctor --via: probes through mailgate decide "mitigated"; through nothing (the backend itself) exit 3', async () => {
  const { startGateway, testConfig } = await import('../helpers/gateway.ts');
  const pf = instances[0]!;
  const gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
      checks: { disabled: ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist', 'fcrdns'] },
    }),
  );
  try {
    const dir = mkdtempSync(join(tmpdir(), 'mailgate-doctor-'));
    const cfg = join(dir, 'mailgate.yaml');
    writeFileSync(cfg, `hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: ${pf.port} }\n`);
    let out = '';
    let err = '';
    const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
    assert.equal(await runDoctor(['--config', cfg, '--rcpt', 'alice@example.test', '--via', `127.0.0.1:${gw.port}`, '--json'], io), 0, err);
    const rs = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ProbeResult);
    const lf = byName(rs, 'bare LF');
    assert.equal(lf.dangerous, true);
    assert.equal(lf.mitigated, true);
    assert.match(lf.viaMailgate ?? '', /^takes it as message content/);
    assert.match(byName(rs, 'percent hack').viaMailgate ?? '', /550 5\.7\.1 Relaying denied: routing characters/);
    // "Through" the backend itself, i.e. without mailgate: the dangerous behaviour is not mitigated.
    out = '';
    assert.equal(await runDoctor(['--config', cfg, '--rcpt', 'alice@example.test', '--via', `127.0.0.1:${pf.port}`], io), 3);
    assert.match(out, /verdict: {2}DANGEROUS\n/);
  } finally {
    await gw.stop(100);
  }
});
