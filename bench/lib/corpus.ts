// Builds the bench's messages, deterministically: a ~5.8 KB multipart message (text + HTML
// alternative, a small PDF-like attachment, a CSV and an inline PNG), DKIM-signed (rsa-sha256,
// relaxed/relaxed, d=example.test s=bench) with a key kept under bench/work/ whose public half the
// DNS stub publishes, and a 50 MB message with one large attachment.
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { once } from 'node:events';
import { join } from 'node:path';

const WORDS = (
  'invoice shipment quarterly review meeting agenda budget forecast contract delivery payment ' +
  'reminder account balance customer order summary figures revenue project update schedule draft'
).split(' ');

/** Deterministic byte stream (sha256 in counter mode), so every run sends the same bytes. */
function bytes(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, off = 0; off < n; i++) {
    off += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off);
  }
  return out;
}

function words(seed: string, n: number): string {
  const b = bytes(seed, n);
  return Array.from(b, (x) => WORDS[x % WORDS.length]).join(' ');
}

const wrap = (s: string, w = 72): string => s.replace(new RegExp(`(.{1,${w}})(\\s+|$)`, 'g'), '$1\n').trimEnd();
const b64 = (buf: Buffer): string =>
  buf
    .toString('base64')
    .replace(/(.{76})/g, '$1\n')
    .trimEnd();

/** The ~5 KB message, LF line endings (smtp-source -F turns each line into CRLF). */
export function smallMessage(): string {
  const mixed = '=_mixed_bench_1';
  const alt = '=_alt_bench_1';
  const csv = ['id,item,amount', ...Array.from({ length: 12 }, (_, k) => `${k},${words(`csv${k}`, 1)},${(k * 37.5).toFixed(2)}`)];
  return [
    'From: "Bench Sender" <sender@example.test>',
    'To: <rcpt@example.test>',
    'Subject: Bench message: quarterly figures',
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
    'Message-ID: <bench.1.20260101@example.test>',
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${mixed}"`,
    '',
    'This is a multi-part message in MIME format.',
    '',
    `--${mixed}`,
    `Content-Type: multipart/alternative; boundary="${alt}"`,
    '',
    `--${alt}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    wrap(`Hello,\n${words('text', 150)}.`),
    '',
    `--${alt}`,
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    wrap(`<html><body><p>Hello,</p><p>${words('html', 110)}.</p><p><a href="https://www.example.test/r/1">report</a></p></body></html>`, 76),
    '',
    `--${alt}--`,
    '',
    `--${mixed}`,
    'Content-Type: application/pdf; name="report.pdf"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="report.pdf"',
    '',
    b64(Buffer.concat([Buffer.from('%PDF-1.4\n'), bytes('pdf', 900)])),
    '',
    `--${mixed}`,
    'Content-Type: text/csv; name="data.csv"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="data.csv"',
    '',
    b64(Buffer.from(csv.join('\n'))),
    '',
    `--${mixed}`,
    'Content-Type: image/png; name="logo.png"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: inline; filename="logo.png"',
    '',
    b64(Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), bytes('png', 320)])),
    '',
    `--${mixed}--`,
    '',
  ].join('\n');
}

export const DKIM_DOMAIN = 'example.test';
export const DKIM_SELECTOR = 'bench';

/** The bench's DKIM key (RSA 2048, made once): PEM private key and the base64 SPKI for DNS. */
export function dkimKey(dir: string): { privatePem: string; publicB64: string } {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `dkim-${DKIM_SELECTOR}.pem`);
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  const privatePem = readFileSync(file, 'utf8');
  const publicB64 = createPublicKey(privatePem).export({ format: 'der', type: 'spki' }).toString('base64');
  return { privatePem, publicB64 };
}

export interface Corpus {
  /** LF file for smtp-source -F. */
  smallFile: string;
  /** The same message as it goes on the wire in DATA (CRLF, dot-stuffed, without the final "."). */
  smallWire: Buffer;
  smallBytes: number;
  /** The DKIM public key (base64 SPKI) the DNS stub publishes at bench._domainkey.example.test. */
  dkimPublicB64: string;
}

/**
 * The small message, DKIM-signed over its CRLF form (what the verifier sees after smtp-source
 * turns each LF line into CRLF). The signature's fixed t= keeps the file identical between runs.
 */
export async function buildCorpus(dir: string): Promise<Corpus> {
  mkdirSync(dir, { recursive: true });
  const key = dkimKey(dir);
  const crlf = smallMessage().split('\n').join('\r\n');
  const sig = { signingDomain: DKIM_DOMAIN, selector: DKIM_SELECTOR, privateKey: key.privatePem, algorithm: 'rsa-sha256' };
  // mailauth's signer reads signatureData (the top-level keys are what its types require)
  const signed = await dkimSign(crlf, { ...sig, signatureData: [sig], canonicalization: 'relaxed/relaxed', signTime: new Date('2026-01-01T00:00:00Z') });
  if (signed.errors.length || !signed.signatures) throw new Error(`DKIM signing of the corpus failed: ${JSON.stringify(signed.errors)}`);
  const msg = (signed.signatures + crlf).split('\r\n').join('\n');
  const smallFile = join(dir, 'msg-5k.eml');
  writeFileSync(smallFile, msg);
  const wire = Buffer.from(
    msg
      .split('\n')
      .map((l) => (l.startsWith('.') ? `.${l}` : l))
      .join('\r\n'),
  );
  return { smallFile, smallWire: wire, smallBytes: wire.length, dkimPublicB64: key.publicB64 };
}

/**
 * A message of about `size` bytes in wire form (CRLF, no line starting with "."): headers, a short
 * text part and one base64 attachment. Written once and reused.
 */
export async function bigMessage(dir: string, size: number): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `big-${size}.eml`);
  if (existsSync(file) && statSync(file).size === size) return file;
  const head = [
    'From: <sender@example.test>',
    'To: <rcpt@example.test>',
    'Subject: Bench: one large attachment',
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
    'Message-ID: <bench.big@example.test>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="=_big"',
    '',
    '--=_big',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'The attachment is the payload.',
    '--=_big',
    'Content-Type: application/octet-stream; name="payload.bin"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="payload.bin"',
    '',
    '',
  ].join('\r\n');
  const tail = '\r\n--=_big--\r\n';
  const out = createWriteStream(file);
  out.write(head);
  let left = size - Buffer.byteLength(head) - Buffer.byteLength(tail);
  const line = 78; // 76 base64 chars + CRLF
  const block = Buffer.from(Array.from({ length: 1024 }, (_, i) => bytes(`big${i}`, 57).toString('base64')).join('\r\n') + '\r\n'); // 1024 lines of 76 chars
  while (left > 0) {
    const n = Math.min(left, block.length);
    let chunk = block.subarray(0, n);
    if (n < block.length) {
      // finish on a whole line: pad the last partial line with 'A' and end it with CRLF
      const whole = Math.floor(n / line) * line;
      const rest = n - whole;
      chunk = Buffer.concat([block.subarray(0, whole), Buffer.from(rest >= 2 ? `${'A'.repeat(rest - 2)}\r\n` : ' '.repeat(rest))]);
    }
    if (!out.write(chunk)) await once(out, 'drain');
    left -= n;
  }
  out.end(tail);
  await once(out, 'finish');
  return file;
}
