// `mailgate rules test` with a config: the DNS checks (SPF, DKIM/ARC/DMARC, FCrDNS) run for real
// against the config's DNS server (a loopback zone here), so a DMARC p=reject failure is found
// without any --fact; --offline and --fact still work as documented.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runRulesCommand } from '../../src/cli/rules.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';

let dns: TestDnsServer;
let dir: string;
const root = join(import.meta.dirname, '..', '..');

before(async () => {
  dns = await startDnsServer({
    zone: {
      'bank.test': { TXT: ['v=spf1 ip4:198.51.100.0/24 -all'] },
      '_dmarc.bank.test': { TXT: ['v=DMARC1; p=reject'] },
      '66.2.0.192.in-addr.arpa': { PTR: ['mail.spoofer.test'] },
      'mail.spoofer.test': { A: ['192.0.2.66'] },
    },
  });
  dir = mkdtempSync(join(tmpdir(), 'mg-rules-live-'));
  writeFileSync(
    join(dir, 'mailgate.yaml'),
    `hostname: mx.example.test\ndomains: [example.test]\nbackend: { maildir: ${dir}/md }\nrules: ${join(root, 'rules')}\ndns: { servers: ["${dns.address}"], timeout_ms: 1000 }\ncapture: false\n`,
  );
  writeFileSync(
    join(dir, 'spoof.eml'),
    'From: CEO <ceo@bank.test>\r\nTo: alice@example.test\r\nSubject: wire transfer\r\nMessage-ID: <x1@bank.test>\r\n\r\nPlease pay.\r\n',
  );
});
after(() => dns.close());

async function run(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runRulesCommand(args, { out: (s) => void (out += s), err: (s) => void (out += s) });
  return { code, out };
}

const envelope = ['--ip', '192.0.2.66', '--helo', 'mail.spoofer.test', '--from', 'ceo@bank.test', '--to', 'alice@example.test'];

test('with a config, SPF and DMARC are computed: a p=reject failure is rejected', async () => {
  const r = await run(['test', join(dir, 'spoof.eml'), '--config', join(dir, 'mailgate.yaml'), ...envelope, '--show-facts']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /DMARC_REJECT/);
  assert.match(r.out, /Result: +reject/i);
  assert.match(r.out, /spf\.result\s+"fail"/);
  assert.match(r.out, /client\.fcrdns\s+true/);
  assert.ok(
    dns.queries.some((q) => q.name === '_dmarc.bank.test'),
    'DMARC record looked up on the configured server',
  );
});

test('--offline computes nothing over DNS; --fact overrides a computed fact', async () => {
  const before = dns.queries.length;
  const off = await run(['test', join(dir, 'spoof.eml'), '--config', join(dir, 'mailgate.yaml'), ...envelope, '--offline']);
  assert.equal(off.code, 0, off.out);
  assert.doesNotMatch(off.out, /DMARC_REJECT/);
  assert.equal(dns.queries.length, before, 'no DNS query with --offline');
  const forced = await run(['test', join(dir, 'spoof.eml'), '--config', join(dir, 'mailgate.yaml'), ...envelope, '--fact', 'dmarc.result=pass']);
  assert.doesNotMatch(forced.out, /DMARC_REJECT/);
});
