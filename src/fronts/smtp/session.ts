// The SMTP front's adapter over the transaction core: the protocol engine (engine.ts) calls in
// here, this turns the calls into core stages, hands the engine a Spool for DATA and gives back
// the core's reply. It also counts the refusals that limits.max_errors is about.
import type { Writable } from 'node:stream';
import { ConnectionCore, type ConnectionInfo, type TlsInfo } from '../../pipeline/transaction.ts';
import type { Runtime } from '../../pipeline/runtime.ts';
import { Spool } from '../../message/spool.ts';
import { type SmtpReply, replies } from '../../pipeline/reply.ts';
import type { SmtpHandler } from './engine.ts';
import type { Params } from './commands.ts';

export type { ConnectionInfo };

export class ClientSession implements SmtpHandler {
  readonly core: ConnectionCore;
  /** Refused MAIL/RCPT/DATA on this connection (dictionary attacks): see limits.max_errors. */
  errors = 0;
  /** RCPTs refused for max_recipients (not errors up to a point, see #counted). */
  overshoot = 0;

  constructor(rt: Runtime, info: ConnectionInfo) {
    this.core = new ConnectionCore(rt, info, 'smtp');
  }

  get rt(): Runtime {
    return this.core.rt;
  }
  get log() {
    return this.core.log;
  }
  get helo(): string {
    return this.core.helo;
  }
  get busy(): boolean {
    return this.core.busy;
  }
  get closed(): boolean {
    return this.core.closed;
  }
  set onIdle(fn: (() => void) | undefined) {
    this.core.onIdle = fn;
  }
  set tls(t: TlsInfo | undefined) {
    this.core.tls = t;
  }

  connect(): Promise<SmtpReply | undefined> {
    return this.core.connect();
  }

  hello(name: string, esmtp: boolean): Promise<SmtpReply | undefined> {
    return this.core.heloStage(name, esmtp);
  }

  async mail(from: string, params: Params): Promise<SmtpReply> {
    return this.#counted(await this.core.mail(from, params));
  }

  async rcpt(to: string, params: Params): Promise<SmtpReply> {
    return this.#counted(await this.core.rcpt(to, params));
  }

  reset(): Promise<void> {
    return this.core.reset();
  }

  secured(info: TlsInfo): void {
    this.core.tls = info;
  }

  /**
   * A refusal counts towards limits.max_errors. Recipients past max_recipients get 452 and are
   * retried by the client in a new transaction (RFC 5321 4.5.3.1.10); like Postfix
   * (smtpd_recipient_overshoot_limit) they only count beyond 1000.
   */
  #counted(reply: SmtpReply): SmtpReply {
    if (reply.isOk) return reply;
    const overshoot = reply.code === 452 && reply.enhanced === '4.5.3' && ++this.overshoot <= 1000;
    if (reply.code !== 421 && !overshoot) this.errors++;
    return reply;
  }

  /** DATA: a fresh spool with the limits in force; the engine writes the content into it. */
  openData(): Writable {
    const rt = this.core.rt;
    const lim = rt.config.limits;
    return new Spool(
      {
        maxBytes: lim.max_message_bytes,
        maxHeaderBytes: lim.max_header_bytes,
        maxLineBytes: lim.max_line_bytes,
        memoryBytes: lim.memory_spool_bytes,
        tmpDir: rt.spoolDir,
      },
      rt.config.smtp.bare_newlines === 'normalize',
      { nulBytes: rt.config.smtp.nul_bytes },
    );
  }

  /** End of DATA: the core decides (a limit hit while spooling is its problem to answer). */
  async endData(sink: Writable, problem: 'too-big' | 'client-gone' | 'write-error' | undefined, early?: (r: SmtpReply) => void): Promise<SmtpReply> {
    const spool = sink as Spool;
    try {
      if (problem === 'write-error') {
        // The spool could not store the message (disk full, say): a 4xx, and the transaction ends.
        this.log.error({ err: spool.errored?.message }, 'spool write failed');
        await this.core.reset();
        return replies.localError('internal error');
      }
      const res = await this.core.data(spool, problem ?? spool.problem, undefined, early);
      return res.reply;
    } finally {
      spool.release();
    }
  }

  /** The connection is gone: the core's disconnect step (checks free their slots). */
  disconnected(): void {
    void this.core.disconnect();
  }
}
