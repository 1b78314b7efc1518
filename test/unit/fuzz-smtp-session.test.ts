// Fuzzing SMTP command arguments through the real server: random sequences of command lines
// (every verb, addresses with routing characters, parameters, NULs, non-ASCII, over-long
// arguments) on a gateway in this process with a Maildir backend. Every line gets a reply in time,
// the connection is still in step afterwards (NOOP → 250 unless it was closed), nothing is logged
// at error level (the class of the old "451 internal error" TypeError), and nothing is delivered
// to a domain that is not ours.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mkdtempSync, readdirSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import fc from 'fast-check';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { runFuzzAsync } from '../helpers/fuzz.ts';

const errors: string[] = [];
const logStream = new Writable({
  write(chunk, _enc, cb) {
    const line = String(chunk);
    if (/"level":(50|60)/.test(line)) errors.push(line);
    cb();
  },
});
const maildir = mkdtempSync(join(tmpdir(), 'mailgate-fuzz-smtp-'));
let gw: TestGateway | undefined;
after(() => gw?.stop(100));

const addrPiece = fc.oneof(
  fc.constantFrom(
    'alice',
    'postmaster',
    'example.test',
    'EXAMPLE.TEST.',
    'elsewhere.test',
    '%',
    '!',
    '@',
    '"',
    '\\',
    '[127.0.0.1]',
    '@relay.test:',
    ',',
    ' ',
    '\0',
    'ü',
    'xn--bcher-kva.example',
    '',
  ),
  fc.string({ maxLength: 6 }),
);
const address = fc.array(addrPiece, { maxLength: 6 }).map((a) => a.join(''));
const param = fc.constantFrom(
  '',
  ' SIZE=100',
  ' SIZE=-1',
  ' SIZE=99999999999999',
  ' BODY=8BITMIME',
  ' BODY=BINARYMIME',
  ' SMTPUTF8',
  ' NOTIFY=NEVER',
  ' RET=FULL',
  ' X=Y',
  ' AUTH=<>',
  ' =',
);
const line = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('EHLO', 'HELO', 'ehlo', 'LHLO'),
      fc.oneof(fc.constantFrom('client.example.net', '[127.0.0.1]', 'bücher.example', ''), fc.string({ maxLength: 20 })),
    )
    .map(([v, a]) => `${v} ${a}`),
  fc.tuple(fc.constantFrom('MAIL FROM:', 'mail from:', 'MAIL FROM: ', 'MAIL FROM'), address, param).map(([v, a, p]) => `${v}<${a}>${p}`),
  fc.tuple(fc.constantFrom('RCPT TO:', 'rcpt to:', 'RCPT TO: '), address, param).map(([v, a, p]) => `${v}<${a}>${p}`),
  fc.constantFrom(
    'DATA',
    'RSET',
    'NOOP',
    'NOOP x',
    'VRFY alice',
    'VRFY',
    'EXPN list',
    'HELP',
    'STARTTLS',
    'AUTH PLAIN AGFsaWNlAHg=',
    'BDAT 10 LAST',
    'XCLIENT ADDR=1.2.3.4',
    'ETRN example.test',
    'TURN',
    '',
    ' ',
    'QUIT',
  ),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer({ min: 500, max: 20_000 }).map((n) => `NOOP ${'a'.repeat(n)}`),
);

test('fuzz: random SMTP command sequences always get replies, stay in step, never an internal error', async (t) => {
  gw = await startGateway(
    testConfig({ backend: { maildir }, checks: { disabled: ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist', 'fcrdns'] }, limits: { max_errors: 1000 } }),
    { logger: pino({ level: 'info' }, logStream) },
  );
  const port = gw.port;
  const runs = await runFuzzAsync(
    'SMTP command arguments (live session)',
    fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 8 }), async (lines) => {
      const c = await RawSmtp.connect(port);
      try {
        assert.equal((await c.read(5000))?.code, 220);
        let closed = false;
        for (const l of lines) {
          if (/[\r\n]/.test(l)) {
            // Embedded line breaks split into several commands: send, then just resync below.
            c.write(`${l}\r\n`);
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          const r = await c.cmd(l, 5000);
          if (!r) {
            closed = true;
            break;
          }
          assert.ok(r.code >= 200 && r.code < 600, `reply to ${JSON.stringify(l.slice(0, 60))}: ${r.code}`);
          if (r.code === 354) {
            c.write('Subject: fuzz\r\n\r\nbody\r\n.\r\n');
            const end = await c.read(5000);
            assert.ok(end && end.code >= 200 && end.code < 600, 'a reply to the end of data');
          }
          if (r.code === 221 || r.code === 421) {
            closed = true;
            break;
          }
        }
        if (!closed && !c.closed) {
          // Drain whatever replies the split lines produced, then the connection must answer NOOP.
          c.write('NOOP fuzz-sync\r\n');
          let r = await c.read(5000);
          for (let i = 0; i < 20 && r && !(r.code === 250 && /OK/i.test(r.text)) && r.code !== 421; i++) r = await c.read(5000);
          if (r && r.code !== 421) assert.equal(r.code, 250);
        }
      } finally {
        c.close();
      }
      assert.deepEqual(errors, [], 'error-level log lines');
    }),
    200,
  );
  // Nothing reached the Maildir except messages for our own domain.
  const fresh = join(maildir, 'new');
  for (const f of existsSync(fresh) ? readdirSync(fresh) : []) {
    const m = readFileSync(join(fresh, f), 'latin1');
    const rcpt = / for <([^>]*)>;/.exec(m)?.[1];
    if (rcpt !== undefined) assert.ok(rcpt.endsWith('@example.test'), `delivered for ${rcpt}`);
  }
  t.diagnostic(`runs ${runs}`);
});
