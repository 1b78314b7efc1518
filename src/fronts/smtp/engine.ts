// mailgate's SMTP server protocol engine (RFC 5321, 2920, 3207, 1870, 6152, 6531): one
// connection's state machine over an abstract transport and a handler (the transaction core,
// through session.ts). Commands are run strictly in order; the replies to one batch of pipelined
// input go out in one write once that input is used up (RFC 2920 3.2), never past a DATA,
// STARTTLS or QUIT boundary. Limits: command line length, bad commands, junk commands, errors,
// idle time, slow clients and session age (the sweeper at the end of this file).
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { InputParser } from './input-parser.ts';
import { acceptableHelo, argsOf, formatReply, isHttpRequest, parsePath, verbOf, type Params } from './commands.ts';
import { SmtpError, SmtpReply, replies } from '../../pipeline/reply.ts';
import { protocolReplies as P } from './protocol-replies.ts';
import type { TlsInfo } from '../../pipeline/transaction.ts';

/** What the engine asks of the mail flow (ClientSession over the transaction core). */
export interface SmtpHandler {
  readonly log: Logger;
  /** Inside a transaction (MAIL .. the reply to DATA): session age does not cut it off. */
  readonly busy: boolean;
  /** Refused MAIL/RCPT/DATA on this connection (limits.max_errors); the engine adds its own. */
  errors: number;
  connect(): Promise<SmtpReply | undefined>;
  hello(name: string, esmtp: boolean): Promise<SmtpReply | undefined>;
  mail(from: string, params: Params): Promise<SmtpReply>;
  rcpt(to: string, params: Params): Promise<SmtpReply>;
  reset(): Promise<void>;
  /** DATA accepted: the Writable the content goes into (the Spool). */
  openData(): Writable;
  /**
   * The content is in (or the client left: 'client-gone'); the reply to the end of DATA. A handler
   * may hand the reply to `early` as soon as it is decided, before its own bookkeeping (the log
   * line, the capture): the engine writes it then, and ignores what the promise resolves to.
   */
  endData(sink: Writable, problem: 'too-big' | 'client-gone' | 'write-error' | undefined, early?: (r: SmtpReply) => void): Promise<SmtpReply>;
  /** The connection is now TLS (STARTTLS done, or implicit). */
  secured(info: TlsInfo): void;
  /** The connection is gone. */
  disconnected(): void;
}

/** What the engine needs of the connection (a socket in listener.ts; a recorder in tests). */
export interface Transport {
  write(data: string): void;
  /** Written data waits in user space: read no more commands until it drains. */
  readonly needsDrain: boolean;
  onceDrain(fn: () => void): void;
  pause(): void;
  resume(): void;
  /**
   * Ends our side once written; `destroyAfterMs` later the socket goes whatever the client does.
   * After QUIT (`quit`), the socket goes as soon as the 221 has left.
   */
  end(destroyAfterMs: number, quit?: boolean): void;
  /**
   * STARTTLS: the 220 is written; switch to TLS on the same connection. Resolves with the session's
   * TLS facts, or undefined when the handshake failed (the transport is closed then).
   */
  startTls?(): Promise<TlsInfo | undefined>;
}

export interface EngineOptions {
  hostname: string;
  banner: string;
  /** The client's address as shown in the EHLO reply. */
  clientIp: string;
  /** SIZE (RFC 1870), advertised and enforced: limits.max_message_bytes at connection time. */
  size: number;
  /** STARTTLS is offered (a TLS listener that is not implicit). */
  starttls: boolean;
  /** The connection is TLS already (implicit TLS). */
  secure?: TlsInfo;
  /** The limits in force (read live: SIGHUP'd values apply to open connections too). */
  limits: () => EngineLimits;
  /** Idle timeout, ms (fixed per connection, like SIZE). */
  idleMs: number;
  /** Clock (tests). */
  now?: () => number;
  /** Register with the shared timer sweeper (default true; tests call tick()). */
  sweep?: boolean;
}

export interface EngineLimits {
  max_errors: number;
  max_junk_commands: number;
  max_session_s: number;
}

/**
 * RFC 5321 4.5.3.1.4 sets 512 octets for a command line; smtp-server allowed 16 KB, and real
 * clients send long parameter lists: a line over 16 KB cannot be a command, and the connection
 * cannot be resynchronised after one, so it is answered 421 and closed.
 */
export const MAX_COMMAND_LINE = 16 * 1024;
/** Unread input (pipelined commands) held before the socket is paused. */
const MAX_BUFFERED = 256 * 1024;
/** Commands run back to back before other connections get a turn (and the replies are written). */
const MAX_SYNC_COMMANDS = 100;
/** Unrecognised (or refused-as-unimplemented) commands before 421 (smtp-server's figure). */
const MAX_BAD_COMMANDS = 10;
/** After our side is closed, how long the client may take to close its own. */
const HALF_CLOSE_MS = 5000;
/** Postfix's smtpd_min_data_rate default: bytes/s a DATA phase must average after the idle time. */
const MIN_DATA_RATE = 500;

const JUNK = new Set(['RSET', 'NOOP', 'HELP', 'VRFY']);
/** Commands we know and do not offer (RFC 5321 4.2.4: 502). */
const NOT_IMPLEMENTED = new Set(['AUTH', 'EXPN', 'ETRN', 'TURN', 'ATRN', 'STARTTLS']);
/** MAIL/RCPT parameters that only make sense with a value. */
const MAIL_VALUE_PARAMS = ['BODY', 'SIZE', 'RET', 'ENVID'] as const;
const RCPT_VALUE_PARAMS = ['NOTIFY', 'ORCPT'] as const;

/** Where a connection is (a plain object: the project builds with erasableSyntaxOnly). */
const Phase = {
  /** The connect stage runs; commands wait. */
  Connecting: 0,
  Commands: 1,
  /** STARTTLS handshake: input is not ours until it completes. */
  Upgrading: 2,
  Closed: 3,
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

export class SmtpEngine {
  readonly #t: Transport;
  readonly #h: SmtpHandler;
  readonly #o: EngineOptions;
  readonly #parser = new InputParser(MAX_COMMAND_LINE);
  readonly #now: () => number;
  #phase: Phase = Phase.Connecting;
  #out = '';
  #running = false;
  #paused = false;
  #early = false;
  #closing = false;
  #finalized = false;
  #secure: TlsInfo | undefined;
  // Session state (RFC 5321 4.1.4): reset by RSET, EHLO/HELO, the end of DATA and STARTTLS.
  #helo = '';
  #mail = false;
  #rcpts = 0;
  #bad = 0;
  #junk = 0;
  /** Inside a handler call: the idle timer does not run while the client waits for us. */
  #pending = false;
  // DATA in progress.
  #sink: Writable | undefined;
  #dataBytes = 0;
  #dataSince = 0;
  #drainWait: (() => void) | undefined;
  // Timers (see tick()).
  readonly #openedAt: number;
  #lastActivity: number;
  #partialSince = 0;

  constructor(transport: Transport, handler: SmtpHandler, opts: EngineOptions) {
    this.#t = transport;
    this.#h = handler;
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#openedAt = this.#lastActivity = this.#now();
    this.#secure = opts.secure;
  }

  get closed(): boolean {
    return this.#phase === Phase.Closed;
  }

  /** Runs the connect stage, then greets (or refuses) and starts reading commands. */
  async start(): Promise<void> {
    if (this.#o.sweep !== false) watch(this);
    if (this.#secure) this.#h.secured(this.#secure);
    const refuse = await this.#call(() => this.#h.connect());
    if (this.#phase === Phase.Closed) return;
    if (refuse) {
      // RFC 5321 3.1: a refused connection gets the refusal instead of the greeting, then closes.
      this.#queue(refuse);
      this.close();
      return;
    }
    this.#phase = Phase.Commands;
    // The greeting carries no enhanced status code (RFC 2034 3).
    this.#queue(P.greeting(this.#o.hostname, this.#o.banner));
    if (this.#early && this.#parser.hasLine()) {
      // Commands sent before the greeting came from a client that does not wait for replies.
      this.#flush();
      this.#reply(P.talkTooSoon(this.#o.hostname), 'connect');
      return;
    }
    void this.#run();
  }

  /** Bytes from the client. */
  receive(chunk: Buffer): void {
    this.#lastActivity = this.#now();
    if (this.#phase === Phase.Closed) return;
    this.#parser.push(chunk);
    if (this.#parser.buffered > MAX_BUFFERED) this.#pause();
    if (this.#phase === Phase.Connecting) {
      this.#early = true;
      return;
    }
    // Upgrading: only bytes of the TLS session arrive here (the plaintext before it was dropped);
    // they wait until the handshake's continuation has reset the session.
    if (this.#phase === Phase.Upgrading) return;
    if (!this.#running) void this.#run();
  }

  /** The client's side is gone (closed, reset): whatever is in flight ends here. */
  gone(): void {
    this.#phase = Phase.Closed;
    this.#closing = true;
    this.#abortData();
    if (this.#finalized) return;
    this.#finalized = true;
    unwatch(this);
    this.#drainWait?.();
    // After the DATA abort above has started, like smtp-server's onClose (setImmediate).
    setImmediate(() => this.#h.disconnected());
  }

  /** Writes a reply now (shutdown: 421 to idle clients); `text` carries the enhanced code. */
  send(code: number, text: string): void {
    if (this.#phase === Phase.Closed || this.#phase === Phase.Upgrading) return;
    this.#out += formatReply(code, '', text);
    this.#flush();
    if (code === 421) this.close();
  }

  /** Ends the connection once what was written has gone out; nothing more is read. */
  close(quit = false): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#phase !== Phase.Upgrading) this.#flush();
    this.#phase = Phase.Closed;
    this.#parser.discard();
    this.#abortData();
    this.#t.end(Math.min(this.#o.idleMs, HALF_CLOSE_MS), quit);
  }

  // --- the command loop ---------------------------------------------------------------------

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      let n = 0;
      while (this.#phase === Phase.Commands) {
        const item = this.#parser.next();
        if (!item) break;
        if (item.kind === 'data') {
          await this.#content(item.chunk);
          continue;
        }
        if (item.kind === 'end') {
          await this.#endData();
          continue;
        }
        if (item.kind === 'too-long') {
          this.#reply(P.lineTooLong, 'line');
          break;
        }
        this.#partialSince = 0;
        await this.#command(item.line);
        if (++n >= MAX_SYNC_COMMANDS && this.#phase === Phase.Commands) {
          // A chunk full of pipelined commands must not starve other connections.
          n = 0;
          this.#flush();
          await new Promise<void>((r) => setImmediate(r));
        }
      }
    } catch (err) {
      this.#h.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'internal error in the SMTP engine');
      this.close();
    } finally {
      this.#running = false;
    }
    if (this.#phase !== Phase.Commands) return;
    this.#flush();
    if (this.#t.needsDrain) {
      // A client that pipelines without reading its replies: read on once they are taken.
      this.#pause();
      this.#t.onceDrain(() => {
        this.#resume();
        void this.#run();
      });
    } else if (this.#paused && this.#parser.buffered <= MAX_BUFFERED) this.#resume();
  }

  #pause(): void {
    if (!this.#paused) {
      this.#paused = true;
      this.#t.pause();
    }
  }

  #resume(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#t.resume();
    }
  }

  #queue(r: SmtpReply): void {
    this.#out += formatReply(r.code, r.enhanced, r.text);
  }

  #flush(): void {
    if (this.#out === '') return;
    const out = this.#out;
    this.#out = '';
    this.#lastActivity = this.#now();
    this.#t.write(out);
  }

  /** One of our own protocol replies; refusals are logged, 421 closes (RFC 5321 3.8). */
  #reply(r: SmtpReply, command: string): void {
    this.#queue(r);
    if (r.code >= 400) {
      this.#h.log.info({ reply: formatReply(r.code, r.enhanced, r.text).trimEnd(), command }, 'protocol error');
      if (r.code !== 421 && (command === 'MAIL' || command === 'RCPT' || command === 'DATA')) this.#h.errors++;
    }
    if (r.code === 421) this.close();
  }

  /** A reply from the mail flow (the core, the backend), with its own enhanced code. */
  #replyWith(r: SmtpReply): void {
    this.#queue(r);
    if (r.code === 421) this.close();
  }

  /** Runs a handler call; a failure is a 4xx, never an unhandled rejection. */
  async #call<T>(fn: () => Promise<T>): Promise<T | SmtpReply> {
    this.#pending = true;
    try {
      return await fn();
    } catch (err) {
      if (err instanceof SmtpError) return err.reply;
      this.#h.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'internal error');
      return replies.localError('internal error');
    } finally {
      this.#pending = false;
      this.#lastActivity = this.#now();
    }
  }

  #resetTransaction(): void {
    this.#mail = false;
    this.#rcpts = 0;
  }

  async #command(line: string): Promise<void> {
    const verb = verbOf(line);
    if (isHttpRequest(line, verb)) return this.#reply(P.http, verb);
    if (JUNK.has(verb) && ++this.#junk > this.#o.limits().max_junk_commands) {
      return this.#reply(replies.tooManyJunkCommands(this.#o.limits().max_junk_commands), verb);
    }
    switch (verb) {
      case 'EHLO':
      case 'HELO':
        return this.#hello(line, verb);
      case 'MAIL':
        return this.#mailFrom(line);
      case 'RCPT':
        return this.#rcptTo(line);
      case 'DATA':
        return this.#data();
      case 'RSET':
        await this.#call(() => this.#h.reset());
        this.#resetTransaction();
        return this.#queue(P.rset);
      case 'NOOP':
        return this.#queue(P.noop);
      case 'HELP':
        return this.#queue(P.help);
      case 'VRFY':
        return argsOf(line).length === 0 ? this.#reply(P.vrfySyntax, verb) : this.#queue(P.vrfy);
      case 'QUIT':
        this.#queue(P.quit);
        return this.close(true);
      case 'STARTTLS':
        if (this.#o.starttls) return this.#startTls(line);
        break;
      case 'XCLIENT':
      case 'XFORWARD':
        // Only a trusted proxy could use these; mailgate trusts PROXY protocol instead.
        return this.#badCommand(P.notAllowed, verb);
    }
    if (NOT_IMPLEMENTED.has(verb)) return this.#badCommand(P.notImplemented, verb);
    return this.#badCommand(P.unknownCommand, verb || 'empty line');
  }

  #badCommand(r: SmtpReply, verb: string): void {
    this.#reply(++this.#bad >= MAX_BAD_COMMANDS ? P.tooManyBadCommands : r, verb);
  }

  async #hello(line: string, verb: 'EHLO' | 'HELO'): Promise<void> {
    const args = argsOf(line);
    // Replies to HELO/EHLO carry no enhanced status code (RFC 2034 3).
    if (args.length !== 1) return this.#reply(verb === 'EHLO' ? P.ehloSyntax : P.heloSyntax, verb);
    const name = args[0] as string;
    // A name refused here never becomes the session's HELO (Received, XCLIENT HELO, helo.name).
    if (!acceptableHelo(name)) return this.#reply(P.badHostname, verb);
    const refuse = await this.#call(() => this.#h.hello(name, verb === 'EHLO'));
    if (refuse) return this.#replyWith(refuse);
    // A new EHLO is an implicit RSET (RFC 5321 4.1.4); the core reset its transaction already.
    this.#helo = name;
    this.#resetTransaction();
    const first = P.hello(this.#o.hostname, this.#o.clientIp);
    if (verb === 'HELO') return this.#queue(first);
    const lines = [first.text, 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'];
    if (this.#o.starttls && !this.#secure) lines.push('STARTTLS');
    if (this.#secure) lines.push('REQUIRETLS');
    if (this.#o.size > 0) lines.push(`SIZE ${this.#o.size}`);
    this.#queue(new SmtpReply(250, '', lines.join('\n')));
  }

  /** MAIL/RCPT/DATA need HELO first and stop at limits.max_errors. */
  #transactionGate(verb: string): boolean {
    if (!this.#helo) {
      this.#reply(P.needHelo, verb);
      return false;
    }
    if (this.#h.errors >= this.#o.limits().max_errors) {
      this.#reply(replies.tooManyErrors(this.#h.errors), verb);
      return false;
    }
    return true;
  }

  async #mailFrom(line: string): Promise<void> {
    if (!this.#transactionGate('MAIL')) return;
    const p = parsePath(line, 'MAIL FROM', MAIL_VALUE_PARAMS);
    if (!p.ok) {
      return this.#reply(p.why === 'syntax' ? P.badSender : P.badParameter(p.why), 'MAIL');
    }
    if (this.#mail) return this.#reply(P.nestedMail, 'MAIL');
    const bad = this.#mailParamProblem(p.params);
    if (bad) return this.#reply(bad, 'MAIL');
    const r = await this.#call(() => this.#h.mail(p.address, p.params));
    if (r.isOk) this.#mail = true;
    this.#replyWith(r);
  }

  /** RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 8689 REQUIRETLS; the core refuses the rest (555). */
  #mailParamProblem(params: Params): SmtpReply | undefined {
    const size = params.SIZE;
    if (typeof size === 'string') {
      if (!/^\d{1,20}$/.test(size)) return P.badSize;
      if (this.#o.size > 0 && Number(size) > this.#o.size) return P.sizeOverLimit(this.#o.size);
    }
    const body = params.BODY;
    if (typeof body === 'string' && body.toUpperCase() !== '7BIT' && body.toUpperCase() !== '8BITMIME') return P.badBody;
    if (params.SMTPUTF8 !== undefined && params.SMTPUTF8 !== true) return P.badSmtputf8;
    if (params.REQUIRETLS !== undefined) {
      if (!this.#secure) return P.requireTlsPlain;
      if (params.REQUIRETLS !== true) return P.badRequireTls;
    }
    return undefined;
  }

  async #rcptTo(line: string): Promise<void> {
    if (!this.#transactionGate('RCPT')) return;
    const p = parsePath(line, 'RCPT TO', RCPT_VALUE_PARAMS);
    if (!p.ok || p.address === '') {
      return this.#reply(p.ok || p.why === 'syntax' ? P.badRecipient : P.badParameter(p.why), 'RCPT');
    }
    if (!this.#mail) return this.#reply(P.needMail, 'RCPT');
    const r = await this.#call(() => this.#h.rcpt(p.address, p.params));
    if (r.isOk) this.#rcpts++;
    this.#replyWith(r);
  }

  #data(): void {
    if (!this.#transactionGate('DATA')) return;
    if (this.#rcpts === 0) {
      this.#reply(P.needRcpt, 'DATA');
      return;
    }
    this.#sink = this.#h.openData();
    this.#sink.on('error', () => undefined); // reported through the write callback below
    this.#dataBytes = 0;
    this.#dataSince = this.#now();
    this.#writeError = false;
    this.#parser.startData();
    // 3xx replies carry no enhanced code (RFC 2034 3). Written now: the client waits for it.
    this.#queue(P.startData);
    this.#flush();
  }
  #writeError = false;

  /** A piece of message content into the spool, with its back-pressure. */
  async #content(chunk: Buffer): Promise<void> {
    const sink = this.#sink;
    if (!sink) return;
    this.#dataBytes += chunk.length;
    // Past the limit the rest is read and dropped; the spool says 552 at the end.
    if (this.#writeError || sink.destroyed) return;
    const ok = sink.write(chunk, (err) => {
      if (err) this.#writeError = true;
    });
    if (ok || this.#phase !== Phase.Commands) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        sink.off('drain', done);
        sink.off('close', done);
        this.#drainWait = undefined;
        resolve();
      };
      this.#drainWait = done;
      sink.once('drain', done);
      sink.once('close', done);
    });
  }

  async #endData(): Promise<void> {
    const sink = this.#sink;
    if (!sink) return;
    const tooBig = this.#o.size > 0 && this.#dataBytes > this.#o.size;
    this.#dataSince = 0;
    this.#pending = true;
    if (!this.#writeError && !sink.destroyed) {
      await new Promise<void>((resolve) => {
        sink.once('finish', resolve);
        sink.once('close', resolve);
        sink.end();
      });
    }
    // The client left while the spool finished: gone() ran the client-gone path already.
    if (this.#sink !== sink) return;
    this.#sink = undefined;
    const problem = this.#writeError ? 'write-error' : tooBig ? 'too-big' : undefined;
    let replied = false;
    const reply = (r: SmtpReply): void => {
      if (replied) return;
      replied = true;
      this.#resetTransaction();
      this.#bad = 0;
      this.#replyWith(r);
    };
    // The reply leaves as soon as the core has it (one session waits for nothing else); the
    // core's log line and capture are written while the client reads it.
    const early = (r: SmtpReply): void => {
      if (this.#phase !== Phase.Commands) return;
      reply(r);
      this.#flush();
    };
    const r = await this.#call(() => this.#h.endData(sink, problem, early));
    reply(r);
  }

  /** The connection ended inside DATA: the core's 'client-gone' path. */
  #abortData(): void {
    const sink = this.#sink;
    if (!sink) return;
    this.#sink = undefined;
    this.#parser.discard();
    void this.#call(() => this.#h.endData(sink, 'client-gone'));
  }

  // --- STARTTLS (RFC 3207) --------------------------------------------------------------------

  async #startTls(line: string): Promise<void> {
    if (argsOf(line).length > 0) return this.#reply(P.startTlsSyntax, 'STARTTLS');
    if (this.#secure) return this.#reply(P.tlsActive, 'STARTTLS');
    const start = this.#t.startTls;
    if (!start) return this.#badCommand(P.notImplemented, 'STARTTLS');
    this.#queue(P.startTls);
    this.#flush();
    // Whatever followed STARTTLS in the same input arrived in plaintext: it is dropped, never run
    // inside the TLS session (the STARTTLS command injection, CVE-2011-0411 and kin).
    this.#parser.discard();
    this.#phase = Phase.Upgrading;
    this.#pending = true;
    const info = await start.call(this.#t);
    this.#pending = false;
    this.#lastActivity = this.#now();
    if (this.#phase !== Phase.Upgrading) return;
    if (!info) {
      this.close();
      return;
    }
    this.#phase = Phase.Commands;
    this.#secure = info;
    // RFC 3207 4.2: forget everything learnt before TLS, HELO included.
    this.#helo = '';
    this.#resetTransaction();
    await this.#call(() => this.#h.reset());
    this.#h.secured(info);
  }

  // --- timers ---------------------------------------------------------------------------------

  /**
   * Called by the sweeper every 250 ms. Idle timeout (only while the client owes us input), and
   * the slow-client rules of Postfix (smtpd_per_record_deadline, smtpd_min_data_rate): a command
   * line must be complete within the idle time of its first byte, and DATA must average
   * MIN_DATA_RATE bytes/s after the first idle period, whatever trickle keeps the socket busy.
   * A session may not outlive limits.max_session_s between transactions.
   */
  tick(now = this.#now()): void {
    if (this.#phase === Phase.Closed || this.#phase === Phase.Connecting) return;
    const idleMs = this.#o.idleMs;
    if (this.#phase === Phase.Upgrading) {
      if (!this.#pending && now - this.#lastActivity > idleMs) this.close();
      return;
    }
    if (!this.#pending && now - this.#lastActivity > idleMs) {
      this.#flush();
      this.#reply(P.idleTimeout, 'idle');
      return;
    }
    let late = false;
    if (this.#sink && this.#dataSince > 0) {
      late = now - this.#dataSince > idleMs + (this.#dataBytes / MIN_DATA_RATE) * 1000;
    } else if (this.#parser.partialLine && !this.#running) {
      this.#partialSince ||= now;
      late = now - this.#partialSince > idleMs;
    } else this.#partialSince = 0;
    if (late) {
      this.#flush();
      this.#reply(replies.tooSlow(), 'slow');
      return;
    }
    const maxS = this.#o.limits().max_session_s;
    if (!this.#h.busy && !this.#pending && now - this.#openedAt > maxS * 1000) {
      this.#flush();
      this.#reply(replies.sessionTooLong(maxS), 'session');
    }
  }
}

// One timer for every connection of the process instead of one (or two) per connection.
const watched = new Set<SmtpEngine>();
let sweeper: NodeJS.Timeout | undefined;

function watch(e: SmtpEngine): void {
  watched.add(e);
  sweeper ??= setInterval(sweep, 250).unref();
}

function unwatch(e: SmtpEngine): void {
  watched.delete(e);
  if (watched.size === 0 && sweeper) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

function sweep(): void {
  const now = Date.now();
  for (const e of watched) {
    try {
      e.tick(now);
    } catch {
      // A tick never throws by design; one connection must not stop the others' timers.
    }
  }
}
