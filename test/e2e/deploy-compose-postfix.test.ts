// The compose stack's demo MTA (deploy/compose/postfix/main.cf + master.cf) really works: the same
// files, with only the container names swapped for loopback (mailpit → a local SMTP receiver, the
// compose subnet → 127.0.0.0/8, private spool dirs), run as a private Postfix behind a real
// mailgate; a message sent to mailgate arrives at the "Mailpit" receiver through Postfix.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { freePort, postfixAvailable } from '../helpers/postfix.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { token } from '../helpers/maildir.ts';

const root = resolve(import.meta.dirname, '..', '..');
const avail = postfixAvailable();
const SKIP = avail.ok ? false : avail.why;

const received: Array<{ rcpts: string[]; data: string }> = [];
let sink: SMTPServer | undefined;
let sinkPort = 0;
let dir = '';
let conf = '';
let pfPort = 0;
let gw: TestGateway | undefined;

const postfix = (...args: string[]) => execFileSync('postfix', ['-c', conf, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

before(async () => {
  if (SKIP) return;
  // The "Mailpit" stand-in: accepts everything and keeps it.
  sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, cb) {
      let data = '';
      stream.on('data', (d: Buffer) => (data += d.toString()));
      stream.on('end', () => {
        received.push({ rcpts: session.envelope.rcptTo.map((r) => r.address), data });
        cb();
      });
    },
  });
  sinkPort = await freePort();
  await new Promise<void>((r) => sink?.listen(sinkPort, '127.0.0.1', () => r()));

  dir = mkdtempSync(join(tmpdir(), 'mg-compose-postfix-'));
  conf = join(dir, 'etc');
  for (const d of [conf, join(dir, 'spool'), join(dir, 'data')]) mkdirSync(d, { recursive: true });
  const ids = (f: string) => Number(execFileSync('id', [f, 'postfix']).toString().trim());
  chownSync(join(dir, 'data'), ids('-u'), ids('-g'));
  execFileSync('chmod', ['755', dir]);
  pfPort = await freePort();
  const main = readFileSync(join(root, 'deploy', 'compose', 'postfix', 'main.cf'), 'utf8');
  const master = readFileSync(join(root, 'deploy', 'compose', 'postfix', 'master.cf'), 'utf8');
  const swap = (text: string, from: string, to: string) => {
    assert.ok(text.includes(from), `compose file no longer contains ${from}`);
    return text.replaceAll(from, to);
  };
  let m = swap(main, 'smtp:[mailpit]:1025', `smtp:[127.0.0.1]:${sinkPort}`);
  m = swap(m, 'smtpd_authorized_xclient_hosts = 172.28.0.0/24', 'smtpd_authorized_xclient_hosts = 127.0.0.0/8');
  m = swap(m, 'maillog_file = /dev/stdout', `maillog_file = ${dir}/postfix.log\nmaillog_file_prefixes = ${dir}`);
  m += `queue_directory = ${dir}/spool\ndata_directory = ${dir}/data\ninet_interfaces = 127.0.0.1\nshlib_directory = /usr/lib/postfix\n`;
  writeFileSync(join(conf, 'main.cf'), m);
  writeFileSync(join(conf, 'master.cf'), swap(master, '10025     inet', `127.0.0.1:${pfPort} inet`));
  postfix('check');
  postfix('start');
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${pfPort}`], { stdio: 'ignore' });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`compose Postfix did not listen:\n${readFileSync(join(dir, 'postfix.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  gw = await startGateway(
    testConfig({ backend: { host: '127.0.0.1', port: pfPort, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 } }),
  );
});

after(async () => {
  await gw?.stop(1000);
  if (conf) {
    try {
      postfix('stop');
    } catch {
      /* not running */
    }
  }
  await new Promise<void>((r) => (sink ? sink.close(() => r()) : r()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('mailgate → the compose Postfix (XCLIENT) → Mailpit: the message arrives', { skip: SKIP }, async () => {
  const tok = token('compose');
  const r = await sendMessage(gw?.port as number, {
    from: 'sender@example.net',
    to: ['alice@example.test'],
    data: `From: sender@example.net\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@example.net>\r\n\r\n${tok}\r\n`,
  });
  const log = () => readFileSync(join(dir, 'postfix.log'), 'utf8').slice(-2000);
  assert.equal(r.end?.code, 250, `${JSON.stringify(r)}\n${log()}`);
  const deadline = Date.now() + 15_000;
  while (!received.some((m) => m.data.includes(tok)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
  const got = received.find((m) => m.data.includes(tok));
  assert.ok(got, `not relayed to the Mailpit stand-in:\n${log()}`);
  assert.deepEqual(got.rcpts, ['alice@example.test']);
  // Postfix's Received names the real client (XCLIENT from mailgate), then mailgate's own.
  assert.match(got.data, /Received: from client\.example\.net \(.*\[127\.0\.0\.1\]\)\r?\n\s+by backend\.example\.test/);
  assert.match(got.data, /by mx\.example\.test/);
});
