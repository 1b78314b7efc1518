// Fixtures for the content tests, built at run time: MIME messages with attachments, stored
// zips (optionally flagged encrypted), the EICAR string (never stored in the repo), a
// MessageView over a buffer, and a private clamd with the tiny signature db of ../shared.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, copyFileSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import net from 'node:net';
import { crc32, deflateRawSync } from 'node:zlib';
import type { MessageView } from '../../src/pipeline/check.ts';

const repo = resolve(import.meta.dirname, '../..');
/**
 * ../shared (conformance material), overridable with MAILGATE_SHARED. A worktree under
 * /work/wt/<name> finds it one level further up.
 */
export const SHARED =
  process.env.MAILGATE_SHARED ??
  [resolve(repo, '..', 'shared'), resolve(repo, '..', '..', 'shared')].find((d) => existsSync(d)) ??
  resolve(repo, '..', 'shared');

/** The 68-byte EICAR test file, assembled from two halves so no scanner flags this source. */
export function eicar(): Buffer {
  return Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');
}

/** An inert "executable": MZ magic and zeros (not runnable, no AV signature). */
export function fakeExe(): Buffer {
  const b = Buffer.alloc(128);
  b.write('MZ', 0, 'latin1');
  b.write('This program cannot be run in DOS mode.', 64, 'latin1');
  return b;
}

/**
 * A zip with stored (uncompressed) members. `encrypted` sets general-purpose bit 0 and puts the
 * 12-byte ZipCrypto header before the data (APPNOTE 6.1.3), as an encrypted entry has; the bytes
 * themselves are not really encrypted — the flag is what the gateway sees.
 */
export function makeZip(files: Array<{ name: string; data: Buffer; encrypted?: boolean; deflate?: boolean }>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const crc = crc32(f.data);
    const packed = f.deflate ? deflateRawSync(f.data) : f.data;
    const stored = f.encrypted ? Buffer.concat([Buffer.alloc(12, 0x5a), packed]) : packed;
    const method = f.deflate ? 8 : 0;
    const flags = (f.encrypted ? 0x1 : 0) | 0x800;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(flags, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(stored.length, 18);
    lh.writeUInt32LE(f.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    locals.push(lh, name, stored);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(flags, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(stored.length, 20);
    ch.writeUInt32LE(f.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    centrals.push(ch, name);
    offset += 30 + name.length + stored.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const b64 = (b: Buffer) => b.toString('base64').replace(/(.{76})/g, '$1\r\n');

export interface Attachment {
  filename: string;
  type: string;
  data: Buffer;
}

/** A multipart/mixed message with a text part and base64 attachments, CRLF line endings. */
export function mimeMessage(opts: { subject?: string; text?: string; html?: string; attachments?: Attachment[]; headers?: string[] } = {}): Buffer {
  const boundary = '=_content_test_b1';
  const lines = [
    'From: Sender <sender@example.org>',
    'To: <user@example.test>',
    `Subject: ${opts.subject ?? 'content test'}`,
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
    `Message-ID: <${Math.random().toString(36).slice(2)}@example.org>`,
    ...(opts.headers ?? []),
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    opts.text ?? 'Hello, see attached.',
  ];
  if (opts.html !== undefined) {
    lines.push(`--${boundary}`, 'Content-Type: text/html; charset=utf-8', '', opts.html);
  }
  for (const a of opts.attachments ?? []) {
    lines.push(
      `--${boundary}`,
      `Content-Type: ${a.type}; name="${a.filename}"`,
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${a.filename}"`,
      '',
      b64(a.data),
    );
  }
  lines.push(`--${boundary}--`, '');
  return Buffer.from(lines.join('\r\n'));
}

/** A message forwarding `inner` as a base64-encoded message/rfc822 attachment. */
export function forwardAsRfc822(inner: Buffer): Buffer {
  const boundary = '=_fwd_b';
  return Buffer.from(
    [
      'From: <fwd@example.org>',
      'To: <user@example.test>',
      'Subject: Fwd: something',
      'MIME-Version: 1.0',
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain',
      '',
      'Forwarded message attached.',
      `--${boundary}`,
      'Content-Type: message/rfc822; name="fwd.eml"',
      'Content-Transfer-Encoding: base64',
      'Content-Disposition: attachment; filename="fwd.eml"',
      '',
      b64(inner),
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
}

/** A MessageView over a buffer (as the spool gives to data checks). */
export function messageView(buf: Buffer): MessageView {
  const end = buf.indexOf('\r\n\r\n');
  const headerEnd = end < 0 ? buf.length : end + 4;
  return {
    size: buf.length,
    headerBytes: buf.subarray(0, headerEnd),
    headers: [],
    stream: () => Readable.from([buf]),
    bodyStream: () => Readable.from([buf.subarray(headerEnd)]),
  };
}

export interface TestClamd {
  dir: string;
  socket: string;
  port: number;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts a private clamd (shared tiny signature db) on a Unix socket and a loopback TCP port. */
export async function startClamd(): Promise<TestClamd> {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-clamd-'));
  mkdirSync(join(dir, 'db'));
  mkdirSync(join(dir, 'tmp'));
  const src = join(SHARED, 'conformance', 'clamav');
  for (const f of ['gateway-test.hdb', 'gateway-test.ndb']) copyFileSync(join(src, f), join(dir, 'db', f));
  const port = await freePort();
  const conf = readFileSync(join(src, 'clamd.conf.template'), 'utf8')
    .replaceAll('@DIR@', dir)
    .replace(/^TCPSocket .*$/m, `TCPSocket ${port}`);
  writeFileSync(join(dir, 'clamd.conf'), conf);
  const child: ChildProcess = spawn('clamd', ['-c', join(dir, 'clamd.conf')], { stdio: 'ignore' });
  const socket = join(dir, 'clamd.sock');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      if (!existsSync(socket)) return r(false);
      const s = net.connect(socket, () => s.write('zPING\0'));
      s.on('data', (d) => {
        s.destroy();
        r(d.toString().startsWith('PONG'));
      });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill();
      throw new Error(`clamd did not start (see ${join(dir, 'clamd.log')})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dir,
    socket,
    port,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
