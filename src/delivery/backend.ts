// Where accepted mail goes: the backend MTA over SMTP (transaction mirrored live, sessions pooled
// when no XCLIENT ties them to one client) or, for trying mailgate out, a local Maildir.
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { BackendSession, BackendError, type BackendReply, type XclientAttrs } from './backend-client.ts';
import { mkdir, rename } from 'node:fs/promises';
import { writeDurable, fsyncDir } from '../message/durable-write.ts';
import { metrics, codeLabel } from '../metrics/registry.ts';
import type { BackendSmtpConfig, Config } from '../config/schema.ts';
import { isMaildirBackend } from '../config/schema.ts';

export { BackendError, type BackendReply };
import type { Backend, ClientIdentity, DeliveryLink as BackendLink } from '../pipeline/delivery.ts';

export type { Backend, ClientIdentity } from '../pipeline/delivery.ts';
export type { DeliveryLink as BackendLink } from '../pipeline/delivery.ts';

function ok(text: string): BackendReply {
  return { code: 250, enhanced: '2.0.0', lines: [text] };
}

// ---------------------------------------------------------------------------------------------
// SMTP backend

export class SmtpBackend implements Backend {
  readonly cfg: BackendSmtpConfig;
  readonly heloName: string;
  #idle: BackendSession[] = [];
  #sweeper: NodeJS.Timeout;

  constructor(cfg: BackendSmtpConfig, ourHostname: string) {
    this.cfg = cfg;
    this.heloName = cfg.helo ?? ourHostname;
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(cfg.pool_idle_ms, 10_000));
    this.#sweeper.unref();
  }

  get description(): string {
    return `smtp://${this.cfg.host}:${this.cfg.port}`;
  }

  async open(): Promise<BackendSession> {
    return BackendSession.open({
      host: this.cfg.host,
      port: this.cfg.port,
      helo: this.heloName,
      connectTimeoutMs: this.cfg.connect_timeout_ms,
      commandTimeoutMs: this.cfg.command_timeout_ms,
      dataTimeoutMs: this.cfg.data_timeout_ms,
      writeTimeoutMs: this.cfg.write_timeout_ms,
    });
  }

  /** An idle pooled session if one is still alive, else a new one. */
  async acquire(): Promise<BackendSession> {
    while (this.#idle.length > 0) {
      const s = this.#idle.pop() as BackendSession;
      if (s.alive && Date.now() - s.lastUsed < this.cfg.pool_idle_ms) return s;
      s.quit();
    }
    return this.open();
  }

  /** Back to the pool if reusable: alive, no XCLIENT identity, no open transaction. */
  giveBack(s: BackendSession): void {
    if (!s.alive) return;
    if (s.xclientSent || s.inTransaction || this.#idle.length >= this.cfg.pool_size) {
      s.quit();
      return;
    }
    s.lastUsed = Date.now();
    this.#idle.push(s);
  }

  #sweep(): void {
    const now = Date.now();
    this.#idle = this.#idle.filter((s) => {
      if (s.alive && now - s.lastUsed < this.cfg.pool_idle_ms) return true;
      s.quit();
      return false;
    });
  }

  link(client: ClientIdentity): BackendLink {
    return new SmtpLink(this, client);
  }

  async probe(): Promise<{ ok: boolean; detail: string }> {
    try {
      const s = await this.open();
      s.quit();
      return { ok: true, detail: `${this.description} answers` };
    } catch (err) {
      return { ok: false, detail: `${this.description}: ${(err as Error).message}` };
    }
  }

  close(): void {
    clearInterval(this.#sweeper);
    for (const s of this.#idle) s.quit();
    this.#idle = [];
  }
}

/** ESMTP parameters we pass through, and the EHLO keyword the backend must offer for each. */
const PASSTHROUGH: Record<string, string> = { SIZE: 'SIZE', BODY: '8BITMIME', SMTPUTF8: 'SMTPUTF8' };

/** MAIL held back until the first RCPT, to leave in the same write (RFC 2920 pipelining). */
interface HeldMail {
  line: string;
  /** A transaction is still open on the session: RSET goes first, in the same write. */
  rset: boolean;
}

class SmtpLink implements BackendLink {
  readonly backend: SmtpBackend;
  readonly client: ClientIdentity;
  session: BackendSession | undefined;
  #held: HeldMail | undefined;
  /** The backend refused the held MAIL: every RCPT of this transaction gets that refusal. */
  #mailRefused: BackendReply | undefined;

  constructor(backend: SmtpBackend, client: ClientIdentity) {
    this.backend = backend;
    this.client = client;
  }

  async #ensure(): Promise<BackendSession> {
    if (this.session?.alive) return this.session;
    const s = await this.backend.acquire();
    this.session = s;
    if (this.backend.cfg.xclient === 'auto' && s.canXclientAddr) {
      const attrs: XclientAttrs = {
        addr: this.client.ip,
        port: this.client.port,
        helo: this.client.helo,
        proto: this.client.esmtp ? 'ESMTP' : 'SMTP',
      };
      if (this.client.rdns) attrs.name = this.client.rdns;
      const r = await s.xclient(attrs, this.client.helo || this.backend.heloName);
      if (r.code >= 300) {
        // The backend refused to take the client's identity: relaying would make our address the
        // client's in its logs and restrictions, which the operator asked us not to do.
        throw new BackendError('protocol', `backend refused XCLIENT: ${r.code} ${r.lines.join(' ')}`);
      }
    }
    return s;
  }

  /**
   * MAIL FROM. The session is acquired now (a connect failure is still the MAIL reply); with a
   * backend that offers PIPELINING the command itself waits for the first RCPT and leaves in the
   * same write, its reply matched first (one write and one round trip less per message). The
   * client's MAIL then gets our 250, and a backend refusal of the sender becomes the reply to each
   * RCPT — nothing is accepted that the backend has not accepted: RCPT still waits for the
   * backend's own answer, and the message for its 250.
   */
  async mail(from: string, params: Record<string, string | true>): Promise<BackendReply> {
    const s = await this.#ensure();
    this.#held = undefined;
    this.#mailRefused = undefined;
    let line = `MAIL FROM:<${from}>`;
    for (const k in params) {
      const v = params[k] as string | true;
      const key = k.toUpperCase();
      const need = PASSTHROUGH[key];
      if (need && s.has(need)) line += v === true ? ` ${key}` : ` ${key}=${v}`;
    }
    if (s.has('PIPELINING')) {
      this.#held = { line, rset: s.inTransaction };
      return { code: 250, enhanced: '2.1.0', lines: ['Ok'] };
    }
    if (s.inTransaction) await s.rset();
    const r = await s.mailLine(line);
    metrics.backendReplies.inc({ code: codeLabel(r.code) });
    return r;
  }

  async rcpt(to: string): Promise<BackendReply> {
    if (!this.session?.alive) throw new BackendError('closed', 'backend connection lost');
    if (this.#mailRefused) return this.#mailRefused;
    const s = this.session;
    const held = this.#held;
    if (!held) {
      const r = await s.rcpt(to);
      metrics.backendReplies.inc({ code: codeLabel(r.code) });
      return r;
    }
    this.#held = undefined;
    const lines = held.rset ? ['RSET', held.line, `RCPT TO:<${to}>`] : [held.line, `RCPT TO:<${to}>`];
    if (held.rset) s.inTransaction = false;
    const replies = await s.pipeline(lines);
    const m = replies[lines.length - 2] as BackendReply;
    const r = replies[lines.length - 1] as BackendReply;
    metrics.backendReplies.inc({ code: codeLabel(m.code) });
    if (m.code !== 250) {
      // The RCPT's own reply (a 503 "need MAIL", typically) says nothing about the recipient.
      this.#mailRefused = m;
      return m;
    }
    s.inTransaction = true;
    metrics.backendReplies.inc({ code: codeLabel(r.code) });
    return r;
  }

  async data(parts: ReadonlyArray<Buffer | Readable>): Promise<BackendReply> {
    if (!this.session?.alive) throw new BackendError('closed', 'backend connection lost');
    const r = await this.session.data(parts as ReadonlyArray<Buffer | AsyncIterable<Buffer>>, () => {
      for (const p of parts) if (!Buffer.isBuffer(p)) p.destroy();
    });
    metrics.backendReplies.inc({ code: codeLabel(r.code) });
    return r;
  }

  async abort(): Promise<void> {
    // A MAIL not sent yet needs no RSET: it is simply never sent.
    this.#held = undefined;
    this.#mailRefused = undefined;
    const s = this.session;
    if (!s?.alive || !s.inTransaction) return;
    try {
      await s.rset();
    } catch {
      s.close();
    }
  }

  release(): void {
    this.#held = undefined;
    this.#mailRefused = undefined;
    const s = this.session;
    this.session = undefined;
    if (!s) return;
    if (s.inTransaction || s.busy) {
      // Never pool a session mid-transaction, or with a command still in flight (the client left
      // while its MAIL or XCLIENT was out: the session would be pooled under the link still
      // using it); closing it makes the backend drop the transaction.
      s.close();
      return;
    }
    this.backend.giveBack(s);
  }
}

/** Maildir files use LF line endings (the local mail convention); SMTP content is CRLF. */
function crlfToLf(parts: ReadonlyArray<Buffer | Readable>): Readable {
  return Readable.from(
    (async function* () {
      let pendingCR = false;
      for await (const chunk of concatStreams(parts)) {
        let s = chunk.toString('latin1');
        if (pendingCR) s = (s.startsWith('\n') ? '' : '\r') + s;
        pendingCR = s.endsWith('\r');
        if (pendingCR) s = s.slice(0, -1);
        yield Buffer.from(s.replace(/\r\n/g, '\n'), 'latin1');
      }
      if (pendingCR) yield Buffer.from('\r');
    })(),
  );
}

async function* concatStreams(parts: ReadonlyArray<Buffer | Readable>): AsyncGenerator<Buffer> {
  for (const p of parts) {
    if (Buffer.isBuffer(p)) yield p;
    else for await (const c of p as AsyncIterable<Buffer>) yield c;
  }
}

// ---------------------------------------------------------------------------------------------
// Maildir backend

/**
 * Delivers into a Maildir (every recipient of our domains accepted), fsync'd before 250. For
 * trying mailgate out without an MTA; a production deployment relays to its MTA.
 */
export class MaildirBackend implements Backend {
  readonly dir: string;
  #seq = 0;
  constructor(dir: string) {
    this.dir = dir;
  }
  get description(): string {
    return `maildir:${this.dir}`;
  }
  link(): BackendLink {
    let rcpts = 0;
    return {
      mail: async () => {
        rcpts = 0;
        return ok('Ok');
      },
      rcpt: async () => {
        rcpts++;
        return ok('Ok');
      },
      data: async (parts) => {
        // Maildir naming (time.unique.host) and tmp/ → new/ move, durable before we say 250.
        const name = `${Date.now()}.M${process.pid}P${++this.#seq}R${randomBytes(4).toString('hex')}.${osHostname()}`;
        // Maildir (maildir(5)): written and fsync'd in tmp/, then renamed into new/, so a reader of
        // new/ never sees a partial file (issue 14, item 11).
        const tmp = join(this.dir, 'tmp', name);
        await writeDurable(tmp, [crlfToLf(parts)]);
        const fresh = join(this.dir, 'new');
        await mkdir(fresh, { recursive: true });
        await mkdir(join(this.dir, 'cur'), { recursive: true });
        await rename(tmp, join(fresh, name));
        await fsyncDir(fresh);
        return ok(`Ok: delivered to maildir as ${name} (${rcpts} recipients)`);
      },
      abort: async () => undefined,
      release: () => undefined,
    };
  }
  async probe(): Promise<{ ok: boolean; detail: string }> {
    return { ok: true, detail: this.description };
  }
  close(): void {}
}

/** The next hop `backend:` in mailgate.yaml names (SMTP relay or Maildir); undefined when absent (milter only). */
export function backendFromConfig(config: Pick<Config, 'backend' | 'hostname'>): Backend | undefined {
  if (!config.backend) return undefined;
  return isMaildirBackend(config.backend) ? new MaildirBackend(config.backend.maildir) : new SmtpBackend(config.backend, config.hostname);
}
