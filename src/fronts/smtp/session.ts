// The SMTP front's adapter over the transaction core: smtp-server callbacks in listener.ts call in
// here, this turns them into core stages, spools DATA (bounded, always drained) and hands back the
// core's reply — thrown as SmtpError for smtp-server when it is a refusal. It also counts the
// refusals that limits.max_errors (enforced in listener.ts) is about.
import type { Readable } from 'node:stream';
import { ConnectionCore, type ConnectionInfo, type TlsInfo } from '../../pipeline/transaction.ts';
import type { Runtime } from '../../pipeline/runtime.ts';
import { Spool, spoolFrom } from '../../message/spool.ts';
import { SmtpError, type SmtpReply } from '../../pipeline/reply.ts';

export type { ConnectionInfo };

export class ClientSession {
  readonly core: ConnectionCore;
  /** Refused MAIL/RCPT commands on this connection (dictionary attacks): see limits.max_errors. */
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

  onConnect(): Promise<SmtpReply | undefined> {
    return this.core.connect();
  }

  onHelo(name: string, esmtp: boolean): Promise<SmtpReply | undefined> {
    return this.core.heloStage(name, esmtp);
  }

  async onMail(from: string, args: Record<string, string | true>): Promise<SmtpReply> {
    return this.#counted(await this.core.mail(from, args));
  }

  async onRcpt(to: string, args: Record<string, string | true> = {}): Promise<SmtpReply> {
    return this.#counted(await this.core.rcpt(to, args));
  }

  onRset(): Promise<void> {
    return this.core.reset();
  }

  /**
   * A refusal becomes an SmtpError for smtp-server, counted towards limits.max_errors. Recipients
   * past max_recipients get 452 and are retried by the client in a new transaction (RFC 5321
   * 4.5.3.1.10); like Postfix (smtpd_recipient_overshoot_limit) they only count beyond 1000.
   */
  #counted(reply: SmtpReply): SmtpReply {
    if (reply.isOk) return reply;
    const overshoot = reply.code === 452 && reply.enhanced === '4.5.3' && ++this.overshoot <= 1000;
    if (reply.code !== 421 && !overshoot) this.errors++;
    throw new SmtpError(reply);
  }

  /** DATA: always drains the client's stream (smtp-server replies only after it ends). */
  async onData(stream: Readable & { sizeExceeded?: boolean }): Promise<SmtpReply> {
    const rt = this.core.rt;
    const lim = rt.config.limits;
    const spool = new Spool(
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
    try {
      try {
        await spoolFrom(stream, spool);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ECONNECTION' && !this.core.closed) throw err;
        // The client went away mid-DATA: an ordinary outcome, logged; nobody reads the reply.
        return (await this.core.data(spool, 'client-gone')).reply;
      }
      const problem = stream.sizeExceeded ? 'too-big' : spool.problem;
      const res = await this.core.data(spool, problem);
      return res.reply;
    } finally {
      spool.release();
    }
  }

  onClose(): void {
    void this.core.disconnect();
  }
}
