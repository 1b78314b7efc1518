// A minimal SMTP client for measurements smtp-source cannot make: the time from the end of DATA
// to the 250 reply, a 50 MB message streamed from a file, and idle connections held after EHLO.
// One command per write, TCP_NODELAY, no pipelining: it measures the server, not itself.
import { connect, type Socket } from 'node:net';
import { createReadStream } from 'node:fs';

export interface Reply {
  code: number;
  text: string;
}

export class SmtpConn {
  private buf = '';
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  private queued: Reply[] = [];
  private failure: Error | null = null;
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /** Connects and reads the greeting (rejects unless it is 220). */
  static async open(port: number, timeoutMs = 30_000): Promise<SmtpConn> {
    const c = new SmtpConn(connect({ host: '127.0.0.1', port }));
    c.socket.setTimeout(timeoutMs, () => c.socket.destroy(new Error('timeout')));
    const g = await c.reply();
    if (g.code !== 220) {
      c.socket.destroy();
      throw new Error(`greeting ${g.code} ${g.text}`);
    }
    return c;
  }

  private onData(d: Buffer): void {
    this.buf += d.toString('latin1');
    for (;;) {
      // a reply ends with a line "NNN text" (a space after the code; "NNN-" continues, RFC 5321 4.2.1)
      const m = /^(\d{3}) [^\r\n]*\r?\n/m.exec(this.buf);
      if (!m) return;
      const end = m.index + m[0].length;
      const text = this.buf.slice(0, end);
      this.buf = this.buf.slice(end);
      const r = { code: Number(m[1]), text: text.trim() };
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(r);
      } else this.queued.push(r);
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w.reject(e);
    }
  }

  reply(): Promise<Reply> {
    const q = this.queued.shift();
    if (q) return Promise.resolve(q);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Sends one command line and returns its reply; throws unless the code is `expect`. */
  async cmd(line: string, expect: number): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    const r = await this.reply();
    if (r.code !== expect) throw new Error(`${line.split(' ')[0]} → ${r.code} ${r.text}`);
    return r;
  }

  async quit(): Promise<void> {
    try {
      this.socket.write('QUIT\r\n');
      await Promise.race([this.reply(), new Promise((r) => setTimeout(r, 1000))]);
    } catch {
      /* the server may close first */
    }
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface SendTiming {
  /** From the write of the last DATA bytes (".\r\n" included) to the 250 reply, in ms. */
  dataEndMs: number;
  /** From connect to the 250 after DATA, in ms. */
  totalMs: number;
}

/** One message on a new connection: EHLO, MAIL, RCPT, DATA, body + ".", QUIT. */
export async function sendOne(port: number, wire: Buffer, opts: { from?: string; to?: string } = {}): Promise<SendTiming> {
  const t0 = performance.now();
  const c = await SmtpConn.open(port);
  try {
    await c.cmd('EHLO client.example.test', 250);
    await c.cmd(`MAIL FROM:<${opts.from ?? 'sender@example.test'}>`, 250);
    await c.cmd(`RCPT TO:<${opts.to ?? 'rcpt@example.test'}>`, 250);
    await c.cmd('DATA', 354);
    const tail = wire.at(-1) === 0x0a ? '.\r\n' : '\r\n.\r\n';
    const t1 = performance.now();
    c.socket.write(Buffer.concat([wire, Buffer.from(tail)]));
    const r = await c.reply();
    const t2 = performance.now();
    if (r.code !== 250) throw new Error(`end of DATA → ${r.code} ${r.text}`);
    return { dataEndMs: t2 - t1, totalMs: t2 - t0 };
  } finally {
    void c.quit();
  }
}

/**
 * Streams a wire-form file (CRLF, dot-stuffed) as one message with back-pressure and returns the
 * final reply and the time the server took after the last byte.
 */
export async function sendFile(port: number, file: string, timeoutMs = 300_000): Promise<{ reply: Reply; seconds: number; afterEndMs: number }> {
  const t0 = performance.now();
  const c = await SmtpConn.open(port, timeoutMs);
  try {
    await c.cmd('EHLO client.example.test', 250);
    await c.cmd('MAIL FROM:<sender@example.test>', 250);
    await c.cmd('RCPT TO:<rcpt@example.test>', 250);
    await c.cmd('DATA', 354);
    const early = c.reply(); // a server may answer (e.g. 552) before the end
    let earlyReply: Reply | null = null;
    void early.then((r) => (earlyReply = r)).catch(() => undefined);
    for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
      if (earlyReply) break;
      if (!c.socket.write(chunk as Buffer)) await new Promise((r) => c.socket.once('drain', r));
    }
    const t1 = performance.now();
    if (!earlyReply) c.socket.write('.\r\n');
    const reply = await early;
    const t2 = performance.now();
    return { reply, seconds: (t2 - t0) / 1000, afterEndMs: t2 - t1 };
  } finally {
    void c.quit();
  }
}
