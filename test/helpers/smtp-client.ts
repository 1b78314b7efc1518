// A raw SMTP client for tests: sends exact bytes and reads whole replies, so protocol edge cases
// (pipelining, bare line endings, smuggling variants) can be driven and asserted byte for byte.
import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  code: number;
  lines: string[];
  /** Full text of the first line after the code, e.g. "5.7.1 Relaying denied: ...". */
  text: string;
}

export class RawSmtp {
  socket: net.Socket | tls.TLSSocket;
  #buf = '';
  #lines: string[] = [];
  #replies: Reply[] = [];
  #waiters: Array<(r: Reply | undefined) => void> = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.#attach(socket);
  }

  #attach(s: net.Socket | tls.TLSSocket): void {
    s.setEncoding('utf8');
    s.on('data', (d: string) => this.#onData(d));
    s.on('close', () => {
      this.closed = true;
      for (const w of this.#waiters.splice(0)) w(undefined);
    });
    s.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1', preface?: Buffer): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host }, () => {
        if (preface) s.write(preface);
        resolve(new RawSmtp(s));
      });
      s.once('error', reject);
    });
  }

  #onData(d: string): void {
    this.#buf += d;
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl).replace(/\r$/, '');
      this.#buf = this.#buf.slice(nl + 1);
      this.#lines.push(line);
      if (line.length < 4 || line[3] !== '-') {
        const lines = this.#lines.map((l) => l.slice(4));
        const r: Reply = { code: Number(line.slice(0, 3)), lines, text: lines[0] ?? '' };
        this.#lines = [];
        const w = this.#waiters.shift();
        if (w) w(r);
        else this.#replies.push(r);
      }
    }
  }

  /** Next reply (or undefined if the server closed the connection), with a timeout. */
  read(timeoutMs = 10_000): Promise<Reply | undefined> {
    const r = this.#replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const waiter = (x: Reply | undefined) => {
        clearTimeout(t);
        resolve(x);
      };
      // On timeout the waiter is withdrawn, so a late reply is kept for the next read().
      const t = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error(`no SMTP reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  /** Sends one command line and returns its reply. */
  async cmd(line: string, timeoutMs?: number): Promise<Reply | undefined> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  async starttls(): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (r?.code !== 220) throw new Error(`STARTTLS refused: ${r?.code} ${r?.text}`);
    const plain = this.socket as net.Socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.#attach(secure);
  }

  close(): void {
    this.socket.destroy();
  }

  /** Waits until the server closes the connection. */
  waitClosed(timeoutMs = 5000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }
}

/** EHLO, MAIL, RCPTs, DATA, content, "." — returns every reply in order. */
export async function sendMessage(
  port: number,
  o: { from: string; to: string[]; data: string | Buffer; helo?: string },
): Promise<{ mail: Reply | undefined; rcpts: Array<Reply | undefined>; data: Reply | undefined; end: Reply | undefined }> {
  const c = await RawSmtp.connect(port);
  try {
    await c.read();
    await c.cmd(`EHLO ${o.helo ?? 'client.example.net'}`);
    const mail = await c.cmd(`MAIL FROM:<${o.from}>`);
    const rcpts: Array<Reply | undefined> = [];
    for (const t of o.to) rcpts.push(await c.cmd(`RCPT TO:<${t}>`));
    const data = await c.cmd('DATA');
    let end: Reply | undefined;
    if (data?.code === 354) {
      c.write(o.data);
      c.write(Buffer.isBuffer(o.data) || o.data.endsWith('\r\n') ? '.\r\n' : '\r\n.\r\n');
      end = await c.read(60_000);
    }
    await c.cmd('QUIT').catch(() => undefined);
    return { mail, rcpts, data, end };
  } finally {
    c.close();
  }
}
