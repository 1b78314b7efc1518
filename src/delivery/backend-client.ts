// The backend leg: a small SMTP client that mirrors the client's transaction on the MTA behind
// mailgate, command by command, so each RCPT gets the backend's own answer live and DATA is only
// acknowledged once the backend has the message. nodemailer's SMTPConnection cannot do this (its
// send() does MAIL, all RCPTs and DATA in one call and it has no XCLIENT), hence this file.
import net from 'node:net';

import { BackendError, type BackendReply } from '../pipeline/delivery.ts';

export { BackendError, type BackendReply };

export function replyText(r: BackendReply): string {
  return r.lines.join(' / ');
}

export interface BackendOptions {
  host: string;
  port: number;
  /** Name for our EHLO. */
  helo: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  dataTimeoutMs: number;
  /** While streaming DATA: longest wait for the backend to take more bytes (default commandTimeoutMs). */
  writeTimeoutMs?: number;
}

export interface XclientAttrs {
  addr: string;
  port?: number;
  name?: string;
  helo?: string;
  proto?: 'SMTP' | 'ESMTP';
}

const ENHANCED_RE = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;
/** While streaming DATA corked, flush whenever this much is buffered. */
const CORK_FLUSH_BYTES = 256 * 1024;
/** Longest reply we accept from the backend, so a broken backend cannot grow our memory. */
const MAX_REPLY_BYTES = 64 * 1024;

interface Pending {
  resolve: (r: BackendReply) => void;
  reject: (e: Error) => void;
  timeoutMs: number;
  timeoutMessage?: string;
}

export class BackendSession {
  readonly options: BackendOptions;
  readonly socket: net.Socket;
  /** EHLO keywords (upper-case) → parameters, e.g. SIZE → "104857600". */
  capabilities = new Map<string, string>();
  /** Set once XCLIENT changed the session's client identity: such a session is never reused. */
  xclientSent = false;
  /** False once the connection failed or was closed; a dead session is never reused. */
  alive = true;
  /** A transaction (MAIL sent, not yet finished by DATA/RSET) is open. */
  inTransaction = false;
  readonly createdAt = Date.now();
  lastUsed = Date.now();

  #buf = '';
  #lines: string[] = [];
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #timerMs = 0;
  #closeError: BackendError | undefined;

  private constructor(socket: net.Socket, options: BackendOptions) {
    this.socket = socket;
    this.options = options;
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => this.#onData(s));
    socket.on('error', (err) => this.#fail(new BackendError('closed', `backend connection error: ${err.message}`)));
    socket.on('close', () => this.#fail(new BackendError('closed', 'backend closed the connection')));
  }

  /** Connects, reads the greeting and sends EHLO (falling back to HELO). */
  static async open(options: BackendOptions): Promise<BackendSession> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: options.host, port: options.port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new BackendError('timeout', `connect to ${options.host}:${options.port} timed out`));
      }, options.connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(t);
        reject(new BackendError('connect', `cannot connect to ${options.host}:${options.port}: ${err.message}`));
      });
    });
    const session = new BackendSession(socket, options);
    try {
      const greeting = await session.#expect(options.connectTimeoutMs);
      if (greeting.code !== 220) {
        throw new BackendError('protocol', `backend greeting: ${greeting.code} ${replyText(greeting)}`);
      }
      await session.ehlo(options.helo);
      return session;
    } catch (err) {
      session.close();
      throw err;
    }
  }

  async ehlo(name: string): Promise<void> {
    let r = await this.command(`EHLO ${name}`);
    if (r.code !== 250) {
      r = await this.command(`HELO ${name}`);
      if (r.code !== 250) throw new BackendError('protocol', `backend refused EHLO/HELO: ${r.code} ${replyText(r)}`);
      this.capabilities = new Map();
      return;
    }
    const caps = new Map<string, string>();
    for (const line of r.lines.slice(1)) {
      const [kw = '', ...rest] = line.trim().split(/\s+/);
      caps.set(kw.toUpperCase(), rest.join(' '));
    }
    this.capabilities = caps;
  }

  has(cap: string): boolean {
    return this.capabilities.has(cap);
  }

  /** XCLIENT is only worth sending when the backend takes the client address (ADDR). */
  get canXclientAddr(): boolean {
    return (this.capabilities.get('XCLIENT') ?? '').toUpperCase().split(/\s+/).includes('ADDR');
  }

  /**
   * Hands the real client's identity to the backend (Postfix XCLIENT): the backend then logs and
   * applies its own restrictions to the real client. The backend answers with a new greeting, so
   * we EHLO again (with the client's HELO name, as Postfix's own smtpd_proxy_filter does).
   */
  async xclient(attrs: XclientAttrs, ehloName: string): Promise<BackendReply> {
    const supported = new Set((this.capabilities.get('XCLIENT') ?? '').toUpperCase().split(/\s+/));
    const parts: string[] = [];
    const add = (k: string, v: string | number | undefined) => {
      if (v !== undefined && v !== '' && supported.has(k)) parts.push(`${k}=${xtext(String(v))}`);
    };
    add('NAME', attrs.name ?? '[UNAVAILABLE]');
    add('ADDR', attrs.addr.includes(':') ? `IPV6:${attrs.addr}` : attrs.addr);
    add('PORT', attrs.port);
    add('PROTO', attrs.proto);
    add('HELO', attrs.helo);
    const r = await this.command(`XCLIENT ${parts.join(' ')}`);
    // Postfix answers with a new 220 greeting; other implementations (smtp-sink) with 250.
    if (r.code >= 200 && r.code < 300) {
      this.xclientSent = true;
      await this.ehlo(ehloName);
    }
    return r;
  }

  /** Sends one command and waits for its reply. */
  command(line: string, timeoutMs = this.options.commandTimeoutMs): Promise<BackendReply> {
    const p = this.#expect(timeoutMs);
    this.#write(`${line}\r\n`);
    return p;
  }

  /**
   * Sends several commands in one write when the backend offers PIPELINING (RFC 2920), else one by
   * one. Replies come back in order.
   */
  async pipeline(lines: string[]): Promise<BackendReply[]> {
    if (!this.has('PIPELINING')) {
      const out: BackendReply[] = [];
      for (const l of lines) out.push(await this.command(l));
      return out;
    }
    const ps = lines.map(() => this.#expect(this.options.commandTimeoutMs));
    this.#write(lines.map((l) => `${l}\r\n`).join(''));
    return Promise.all(ps);
  }

  mail(from: string, params: string[]): Promise<BackendReply> {
    return this.mailLine(`MAIL FROM:<${from}>${params.length ? ' ' + params.join(' ') : ''}`);
  }

  /** MAIL with the command line already built (parameters included). */
  async mailLine(line: string): Promise<BackendReply> {
    const r = await this.command(line);
    if (r.code === 250) this.inTransaction = true;
    return r;
  }

  rcpt(to: string, params: string[] = []): Promise<BackendReply> {
    return this.command(`RCPT TO:<${to}>${params.length ? ' ' + params.join(' ') : ''}`);
  }

  async rset(): Promise<BackendReply> {
    const r = await this.command('RSET');
    this.inTransaction = false;
    return r;
  }

  /**
   * DATA: waits for 354, streams `content` (CRLF line endings, not dot-stuffed) dot-stuffing it on
   * the way, ends with CRLF.CRLF and returns the backend's final reply. `content` must already be
   * normalised to CRLF (the spool does that), so no bare LF or CR can end the message early.
   */
  async data(content: AsyncIterable<Buffer> | ReadonlyArray<Buffer | AsyncIterable<Buffer>>, onSkip?: () => void): Promise<BackendReply> {
    const go = await this.command('DATA');
    if (go.code !== 354) {
      onSkip?.();
      this.inTransaction = false;
      return go;
    }
    let atLineStart = true;
    let lastTwo = '';
    /** Writes one chunk dot-stuffed; true when enough is buffered to flush. */
    const push = (chunk: Buffer): boolean => {
      if (!this.alive) throw this.#closeError ?? new BackendError('closed', 'backend closed during DATA');
      const out = dotStuff(chunk, atLineStart);
      if (chunk.length > 0) {
        atLineStart = chunk[chunk.length - 1] === 0x0a;
        lastTwo = chunk.length >= 2 ? chunk.toString('latin1', chunk.length - 2) : (lastTwo + chunk.toString('latin1')).slice(-2);
      }
      this.socket.write(out);
      return this.socket.writableLength >= CORK_FLUSH_BYTES;
    };
    const flush = async (): Promise<void> => {
      this.socket.uncork();
      if (this.socket.writableNeedDrain) await this.#drain();
      this.socket.cork();
    };
    // Corked: the header block, the body chunks and the final dot leave in one write(2) for a
    // message that fits the socket buffer (each write on loopback costs ~60 µs: bench/HISTORY.md);
    // a large message is flushed every CORK_FLUSH_BYTES so it is still streamed. Buffers given as
    // parts are written as they are (no async iteration for them).
    this.socket.cork();
    try {
      const parts = isPartList(content) ? content : [content];
      for (const part of parts) {
        if (Buffer.isBuffer(part)) {
          if (push(part)) await flush();
        } else for await (const chunk of part) if (push(chunk)) await flush();
      }
      const end = lastTwo === '\r\n' || lastTwo === '' ? '.\r\n' : '\r\n.\r\n';
      // No answer to the final dot in time: the backend may still queue the message, and the client
      // (told 4xx) will send it again. Inherent to filtering before queue (README, item 12): say so.
      const p = this.#expect(
        this.options.dataTimeoutMs,
        `backend did not answer the end of data within ${this.options.dataTimeoutMs} ms; it may have queued the message, so the client's retry can deliver it twice`,
      );
      this.#write(end);
      this.socket.uncork();
      const r = await p;
      this.inTransaction = false;
      return r;
    } finally {
      // Balance the cork on every path (errors included); uncorking an uncorked socket is a no-op.
      while (this.socket.writableCorked > 0) this.socket.uncork();
    }
  }

  /** Polite close: QUIT without waiting long for the answer. */
  quit(): void {
    if (!this.alive) return;
    this.alive = false;
    this.socket.end('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  close(): void {
    this.alive = false;
    this.socket.destroy();
  }

  /** A command waits for its reply: the session is in use, whatever inTransaction says yet. */
  get busy(): boolean {
    return this.#pending.length > 0;
  }

  #write(s: string): void {
    if (!this.alive) return;
    this.lastUsed = Date.now();
    this.socket.write(s, 'utf8');
  }

  /**
   * Waits until the socket buffer drained. A backend that stops reading after 354 would make this
   * wait forever, and no reply timer runs while we send: so it is bounded by writeTimeoutMs and
   * ends in a timeout (the client gets 451 4.4.2; issue 14, item 5).
   */
  #drain(): Promise<void> {
    const ms = this.options.writeTimeoutMs ?? this.options.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
      };
      const onDrain = () => {
        done();
        resolve();
      };
      const onClose = () => {
        done();
        reject(this.#closeError ?? new BackendError('closed', 'backend closed during DATA'));
      };
      const timer = setTimeout(() => {
        done();
        const err = new BackendError('timeout', `backend took no DATA bytes for ${ms} ms (stopped reading)`);
        this.#fail(err);
        this.socket.destroy();
        reject(err);
      }, ms);
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
  }

  #expect(timeoutMs: number, timeoutMessage?: string): Promise<BackendReply> {
    return new Promise((resolve, reject) => {
      if (!this.alive) {
        reject(this.#closeError ?? new BackendError('closed', 'backend connection is closed'));
        return;
      }
      this.#pending.push({ resolve, reject, timeoutMs, ...(timeoutMessage ? { timeoutMessage } : {}) });
      if (this.#pending.length === 1) this.#arm();
    });
  }

  /**
   * The timer always covers the oldest outstanding reply. One timer per session, re-armed with
   * refresh() (was a new timer per reply: ~5 a message); left running (unref'd) when nothing is
   * pending, it then finds nothing to time out.
   */
  #arm(): void {
    const head = this.#pending[0];
    if (!head) {
      // Nothing to wait for: the leftover timer must not keep the process alive (CLI commands).
      this.#timer?.unref();
      return;
    }
    if (this.#timer && this.#timerMs === head.timeoutMs) {
      this.#timer.ref().refresh();
      return;
    }
    clearTimeout(this.#timer);
    this.#timerMs = head.timeoutMs;
    this.#timer = setTimeout(() => this.#onTimeout(), head.timeoutMs);
  }

  #onTimeout(): void {
    const head = this.#pending[0];
    if (!head) return;
    this.#fail(new BackendError('timeout', head.timeoutMessage ?? `backend did not answer within ${head.timeoutMs} ms`));
    this.socket.destroy();
  }

  #onData(s: string): void {
    this.#buf += s;
    if (this.#buf.length > MAX_REPLY_BYTES) {
      this.#fail(new BackendError('protocol', 'backend reply too long'));
      this.socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl).replace(/\r$/, '');
      this.#buf = this.#buf.slice(nl + 1);
      this.#lines.push(line);
      // "250-..." continues a reply, "250 ..." (or a bare "250") ends it (RFC 5321 4.2.1).
      if (line.length < 4 || line[3] !== '-') this.#finishReply();
    }
  }

  #finishReply(): void {
    const lines = this.#lines;
    this.#lines = [];
    const first = lines[0] ?? '';
    const code = Number.parseInt(first.slice(0, 3), 10);
    if (!Number.isFinite(code) || code < 200 || code > 599) {
      this.#fail(new BackendError('protocol', `unparseable backend reply: ${first.slice(0, 100)}`));
      this.socket.destroy();
      return;
    }
    let enhanced = '';
    const texts = lines.map((l) => l.slice(4));
    const m = ENHANCED_RE.exec(texts[0] ?? '');
    if (m && m[1] === String(code)[0]) {
      enhanced = `${m[1]}.${m[2]}.${m[3]}`;
      for (let i = 0; i < texts.length; i++) {
        const t = texts[i] ?? '';
        if (t.startsWith(enhanced)) texts[i] = t.slice(enhanced.length).trimStart();
      }
    }
    const head = this.#pending.shift();
    this.#arm();
    if (head) head.resolve({ code, enhanced, lines: texts });
    // An unsolicited reply (e.g. a 421 before closing) is dropped: the close that follows fails
    // whatever is pending.
  }

  #fail(err: BackendError): void {
    if (!this.#closeError) this.#closeError = err;
    this.alive = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) p.reject(this.#closeError);
  }
}

function isPartList(c: AsyncIterable<Buffer> | ReadonlyArray<Buffer | AsyncIterable<Buffer>>): c is ReadonlyArray<Buffer | AsyncIterable<Buffer>> {
  return Array.isArray(c);
}

/**
 * RFC 3461 4 xtext for XCLIENT attribute values: "+", "=", controls, space and every byte of a
 * non-ASCII character's UTF-8 encoding as +XX (xtext encodes octets, never "+FC" or "+20AC").
 */
export function xtext(v: string): string {
  let out = '';
  for (const b of Buffer.from(v, 'utf8')) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d ? String.fromCharCode(b) : '+' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * Dot-stuffing (RFC 5321 4.5.2): a "." at the start of a line is doubled. Works on CRLF content
 * in chunks; `atLineStart` says whether the previous chunk ended a line.
 */
export function dotStuff(chunk: Buffer, atLineStart: boolean): Buffer {
  let count = atLineStart && chunk[0] === 0x2e ? 1 : 0;
  let i = chunk.indexOf('\n.');
  while (i >= 0) {
    count++;
    i = chunk.indexOf('\n.', i + 2);
  }
  if (count === 0) return chunk;
  const out = Buffer.allocUnsafe(chunk.length + count);
  let o = 0;
  let from = 0;
  if (atLineStart && chunk[0] === 0x2e) {
    out[o++] = 0x2e;
  }
  i = chunk.indexOf('\n.');
  while (i >= 0) {
    o += chunk.copy(out, o, from, i + 1);
    out[o++] = 0x2e;
    from = i + 1;
    i = chunk.indexOf('\n.', i + 2);
  }
  o += chunk.copy(out, o, from);
  return out;
}
