// Records what a real Postfix sends to a milter (milter_protocol 6, our negotiation) into
// test/fixtures/milter/postfix-capture.json, which test/unit/milter-protocol.test.ts decodes.
// The fixture is (re)written when missing or with MAILGATE_RECORD=1; otherwise this test checks
// that today's Postfix still sends the same command sequence as the fixture.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startPostfix, postfixAvailable, type PostfixInstance } from '../helpers/postfix.ts';
import { startMilterRecorder, type MilterRecorder } from '../helpers/milter-recorder.ts';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { decodeCommand, PacketReader } from '../../src/fronts/milter/protocol.ts';

const FIXTURE = new URL('../fixtures/milter/postfix-capture.json', import.meta.url);
const avail = postfixAvailable();

let pf: PostfixInstance;
let rec: MilterRecorder;

before(async () => {
  if (!avail.ok) return;
  rec = await startMilterRecorder();
  pf = await startPostfix({ main: { smtpd_milters: `inet:127.0.0.1:${rec.port}`, milter_protocol: '6', milter_default_action: 'tempfail' } });
});
after(async () => {
  pf?.destroy();
  await rec?.close();
});

async function expect(c: RawSmtp, line: string | undefined, code: number): Promise<void> {
  const r = line === undefined ? await c.read() : await c.cmd(line);
  assert.equal(r?.code, code, `${line ?? 'greeting'} → ${r?.code} ${r?.text}`);
}

const MESSAGE =
  'From: Sender <sender@example.net>\r\nTo: alice@example.test, bob@example.test\r\nSubject: recorded\r\n' +
  'X-Folded: first line\r\n\tsecond line\r\nMessage-ID: <rec-1@example.net>\r\n\r\nHello,\r\nthis is a recorded message.\r\n.\r\n';

/** Each scenario is one SMTP session, so one milter connection. */
const scenarios: Array<{ name: string; run(c: RawSmtp): Promise<void> }> = [
  {
    name: 'message-two-recipients',
    async run(c) {
      await expect(c, 'EHLO client.example.net', 250);
      await expect(c, 'MAIL FROM:<sender@example.net> SIZE=300 BODY=8BITMIME', 250);
      await expect(c, 'RCPT TO:<alice@example.test>', 250);
      await expect(c, 'RCPT TO:<bob@example.test>', 250);
      await expect(c, 'DATA', 354);
      c.write(MESSAGE);
      await expect(c, undefined, 250);
    },
  },
  {
    name: 'rset-then-message',
    async run(c) {
      await expect(c, 'EHLO client.example.net', 250);
      await expect(c, 'MAIL FROM:<first@example.net>', 250);
      await expect(c, 'RCPT TO:<alice@example.test>', 250);
      await expect(c, 'RSET', 250);
      await expect(c, 'MAIL FROM:<>', 250);
      await expect(c, 'RCPT TO:<carol@example.test>', 250);
      await expect(c, 'DATA', 354);
      c.write('Subject: after rset\r\n\r\nbody\r\n.\r\n');
      await expect(c, undefined, 250);
    },
  },
];

test('record the milter conversation of a real Postfix', { skip: avail.ok ? false : avail.why }, async () => {
  for (const s of scenarios) {
    const c = await RawSmtp.connect(pf.port);
    await expect(c, undefined, 220);
    await s.run(c);
    await c.cmd('QUIT').catch(() => undefined);
    c.close();
    await c.waitClosed();
  }
  // Postfix closes the milter connection a moment after the SMTP session ends.
  const sequence = (hex: string) => {
    const r = new PacketReader();
    return r.push(Buffer.from(hex, 'hex')).map((p) => decodeCommand(p.cmd, p.payload).cmd);
  };
  // startPostfix's readiness probe connects to smtpd too (CONNECT, then QUIT): not a scenario.
  const real = () => rec.connections().filter((c) => sequence(c.toString('hex')).includes('helo'));
  const deadline = Date.now() + 10_000;
  while (real().length < scenarios.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500));
  const conns = real();
  assert.equal(conns.length, scenarios.length, 'one milter connection per SMTP session');
  const sessions = scenarios.map((s, i) => ({ scenario: s.name, hex: (conns[i] as Buffer).toString('hex') }));
  for (const s of sessions) assert.ok(sequence(s.hex).length > 5, `${s.scenario}: decodes`);
  if (!existsSync(FIXTURE) || process.env.MAILGATE_RECORD === '1') {
    const version = pf.tool('postconf', ['-h', 'mail_version']).trim();
    writeFileSync(FIXTURE, JSON.stringify({ recorded_by: 'test/e2e/milter-record.test.ts', postfix: version, milter_protocol: 6, sessions }, null, 2) + '\n');
  } else {
    const fixture = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { sessions: Array<{ scenario: string; hex: string }> };
    for (const [i, s] of sessions.entries())
      assert.deepEqual(sequence(s.hex), sequence(fixture.sessions[i]?.hex ?? ''), `${s.scenario}: same command sequence as the fixture`);
  }
});
