// End to end through SMTP, the real gateway with the shipped rules and the content checks, and a
// private Postfix: an exe is refused with 554 5.7.1 naming the type, also in a zip; an encrypted
// zip is quarantined on disk; a clean message with attachments arrives byte-identical apart from
// the headers mailgate adds; malformed MIME is quarantined.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { token } from '../helpers/maildir.ts';
import net from 'node:net';
import { eicar, fakeExe, makeZip, mimeMessage, startClamd, SHARED, type TestClamd } from '../helpers/content-fixtures.ts';
import { createContentChecks } from '../../src/checks/content/content-checks.ts';
import { contentConfigSchema } from '../../src/config/content-schema.ts';

const repo = resolve(import.meta.dirname, '../..');
let pf: PostfixInstance;
let gw: TestGateway;
let qdir: string;

before(async () => {
  pf = await startPostfix({ users: ['alice'] });
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-content-e2e-'));
  const rules = join(dir, 'rules');
  cpSync(join(repo, 'rules'), rules, { recursive: true });
  qdir = join(dir, 'quarantine');
  gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port },
      rules,
      quarantine: { dir: qdir },
      checks: { disabled: ['spf', 'dkim-arc-dmarc', 'fcrdns', 'dnsbl', 'greylist'] },
    }),
    { extraChecks: createContentChecks(contentConfigSchema.parse({})) },
  );
});
after(async () => {
  await gw?.stop(1000);
  pf?.destroy();
});

function delivered(tok: string): Buffer[] {
  const out: Buffer[] = [];
  for (const sub of ['new', 'cur']) {
    const d = join(pf.mailBase, 'alice', sub);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) {
      const b = readFileSync(join(d, f));
      if (b.includes(tok)) out.push(b);
    }
  }
  return out;
}

async function waitFor(tok: string, ms = 15_000): Promise<Buffer[]> {
  const end = Date.now() + ms;
  for (;;) {
    const d = delivered(tok);
    if (d.length || Date.now() > end) return d;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Quarantined entries whose bytes contain the token (read through the gateway's quarantine store). */
async function quarantined(tok: string): Promise<string[]> {
  const out: string[] = [];
  for (const row of (await gw.quarantine.list({ status: 'all' })).rows) if ((await gw.quarantine.bytes(row)).includes(tok)) out.push(row.id);
  return out;
}

const send = (data: Buffer) => sendMessage(gw.port, { from: 'sender@example.org', to: ['alice@example.test'], data });

const refused = [
  { desc: 'an exe attachment', att: () => ({ filename: 'setup.exe', type: 'application/octet-stream', data: fakeExe() }), type: /pe/ },
  { desc: 'an exe disguised as a PDF', att: () => ({ filename: 'statement.pdf', type: 'application/pdf', data: fakeExe() }), type: /pe/ },
  { desc: 'a .js script', att: () => ({ filename: 'invoice.js', type: 'text/plain', data: Buffer.from('WScript.Echo(1)') }), type: /js/ },
  {
    desc: 'an exe in a zip',
    att: () => ({ filename: 'docs.zip', type: 'application/zip', data: makeZip([{ name: 'docs/readme.pdf.exe', data: fakeExe() }]) }),
    type: /pe/,
  },
  {
    desc: 'an exe in a zip in a zip',
    att: () => ({
      filename: 'outer.zip',
      type: 'application/zip',
      data: makeZip([{ name: 'inner.zip', data: makeZip([{ name: 'a.scr', data: fakeExe() }]) }]),
    }),
    type: /pe/,
  },
];

for (const c of refused) {
  test(`refused: ${c.desc} → 554 5.7.1 naming the type, nothing delivered`, async () => {
    const tok = token('exe');
    const r = await send(mimeMessage({ subject: tok, attachments: [c.att()] }));
    assert.equal(r.end?.code, 554, r.end?.text);
    assert.match(r.end?.text ?? '', /^5\.7\.1 Executable attachments are not accepted \(file type: /);
    assert.match(r.end?.text ?? '', c.type);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(delivered(tok).length, 0);
  });
}

test('an encrypted zip is quarantined: 250, on disk, not delivered', async () => {
  const tok = token('enc');
  const r = await send(
    mimeMessage({
      subject: tok,
      attachments: [{ filename: 'secret.zip', type: 'application/zip', data: makeZip([{ name: 'a.pdf', data: Buffer.from('%PDF-1.4 x'), encrypted: true }]) }],
    }),
  );
  assert.equal(r.end?.code, 250, r.end?.text);
  assert.equal((await quarantined(tok)).length, 1);
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(delivered(tok).length, 0);
});

test('malformed MIME (a crafted sample with two boundary= parameters) is quarantined', async () => {
  const tok = token('mal');
  const raw = readFileSync(join(SHARED, 'conformance', 'mime', 'crafted', 'duplicate-boundary-param.eml'), 'latin1').replace(/\r?\n/g, '\r\n');
  const data = Buffer.from(`X-Token: ${tok}\r\n${raw.replace(/^\.+/gm, '')}`);
  const r = await send(data);
  // The hidden x.exe may also be seen: then it is refused, which is fine too; never delivered.
  assert.ok(r.end?.code === 250 || r.end?.code === 554, r.end?.text);
  if (r.end?.code === 250) assert.equal((await quarantined(tok)).length, 1);
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(delivered(tok).length, 0);
});

test('a clean message with attachments arrives byte-identical apart from the added headers', async () => {
  const tok = token('clean');
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(2000, 0x20)]);
  const zip = makeZip([{ name: 'notes.txt', data: Buffer.from('plain notes\r\n') }]);
  const msg = mimeMessage({
    subject: tok,
    attachments: [
      { filename: 'report.pdf', type: 'application/pdf', data: pdf },
      { filename: 'notes.zip', type: 'application/zip', data: zip },
    ],
  });
  const r = await send(msg);
  assert.equal(r.end?.code, 250, r.end?.text);
  const [got] = await waitFor(tok);
  assert.ok(got, 'delivered');
  // The original message is the tail of what was delivered: mailgate and Postfix only prepend.
  const body = got.toString('latin1').replace(/\r?\n/g, '\r\n');
  const sent = msg.toString('latin1');
  assert.ok(body.endsWith(sent), 'original bytes intact after the prepended headers');
  const added = body.slice(0, body.length - sent.length);
  for (const line of added.split('\r\n').filter((l) => l && !/^\s/.test(l))) {
    assert.match(line, /^(Return-Path|Delivered-To|Received|X-Mailgate-Status|X-Original-To):/, `unexpected added header ${line}`);
  }
});

describe('with clamd', () => {
  let clamd: TestClamd;
  let hung: net.Server;
  let hungPort = 0;
  const gws: TestGateway[] = [];
  before(async () => {
    clamd = await startClamd();
    hung = net.createServer({ allowHalfOpen: true }, (c) => c.on('data', () => undefined));
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', () => r()));
    hungPort = (hung.address() as net.AddressInfo).port;
  });
  after(async () => {
    for (const g of gws) await g.stop(1000);
    await clamd?.stop();
    hung?.close();
  });

  async function gatewayWith(clamav: Record<string, unknown>): Promise<TestGateway> {
    const dir = mkdtempSync(join(tmpdir(), 'mailgate-content-av-'));
    const rules = join(dir, 'rules');
    cpSync(join(repo, 'rules'), rules, { recursive: true });
    const g = await startGateway(
      testConfig({
        backend: { host: '127.0.0.1', port: pf.port },
        rules,
        quarantine: { dir: join(dir, 'q') },
        checks: { disabled: ['spf', 'dkim-arc-dmarc', 'fcrdns', 'dnsbl', 'greylist'] },
      }),
      { extraChecks: createContentChecks(contentConfigSchema.parse({ clamav: { enabled: true, ...clamav } })) },
    );
    gws.push(g);
    return g;
  }

  test('EICAR (zipped, so no executable rule fires) → 554 5.7.1 naming the signature', async () => {
    const g = await gatewayWith({ socket: clamd.socket });
    const tok = token('eicar');
    const msg = mimeMessage({
      subject: tok,
      attachments: [{ filename: 'e.zip', type: 'application/zip', data: makeZip([{ name: 'eicar.txt', data: eicar() }]) }],
    });
    const r = await sendMessage(g.port, { from: 'sender@example.org', to: ['alice@example.test'], data: msg });
    assert.equal(r.end?.code, 554, r.end?.text);
    assert.match(r.end?.text ?? '', /^5\.7\.1 Message contains malware \(Gateway\.Test\.EICAR/);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(delivered(tok).length, 0);
  });

  test('clean mail passes clamd and is delivered', async () => {
    const g = await gatewayWith({ host: '127.0.0.1', port: clamd.port });
    const tok = token('avclean');
    const r = await sendMessage(g.port, { from: 'sender@example.org', to: ['alice@example.test'], data: mimeMessage({ subject: tok }) });
    assert.equal(r.end?.code, 250, r.end?.text);
    assert.equal((await waitFor(tok)).length, 1);
  });

  test('clamd down → 451 (tempfail), nothing delivered', async () => {
    const g = await gatewayWith({ socket: join(clamd.dir, 'gone.sock') });
    const tok = token('avdown');
    const r = await sendMessage(g.port, { from: 'sender@example.org', to: ['alice@example.test'], data: mimeMessage({ subject: tok }) });
    assert.equal(r.end?.code, 451, r.end?.text);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(delivered(tok).length, 0);
  });

  test('clamd hung → 451 within the timeout', async () => {
    const g = await gatewayWith({ host: '127.0.0.1', port: hungPort, timeout_ms: 800 });
    const tok = token('avhung');
    const t0 = Date.now();
    const r = await sendMessage(g.port, { from: 'sender@example.org', to: ['alice@example.test'], data: mimeMessage({ subject: tok }) });
    assert.equal(r.end?.code, 451, r.end?.text);
    assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
  });
});
