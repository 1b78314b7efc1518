// One client connection: its facts, its link to the backend and its current transaction. The
// smtp-server callbacks in front.ts call into here; this is the one place where a stage's verdict
// (or a backend answer) becomes the SMTP reply the client sees.
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { FactSet } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import { emptyEdits, type CheckOutput, type ConnectionContext } from '../pipeline/check.ts';
import { runStage, type StageResult } from '../pipeline/runner.ts';
import { emptyVerdict, type Verdict, type Action } from '../rules/verdict.ts';
import { Spool } from '../message/spool.ts';
import { rewriteHeaderBlock } from '../message/headers.ts';
import { buildTransactionStrip } from '../message/strip-headers.ts';
import { messageFacts } from '../message/message-facts.ts';
import { SmtpReply, SmtpError, replies } from './reply.ts';
import { checkRecipient, parseAddress } from './address.ts';
import { BackendError, type BackendLink, type BackendReply } from './backend.ts';
import { metrics } from '../admin/metrics.ts';
import { releaseConcurrency } from '../checks/limit-sections.ts';
import type { Runtime } from './runtime.ts';

export interface ConnectionInfo {
  id: string;
  ip: string;
  port: number;
  localPort: number;
  proxied: boolean;
  proxyIp?: string;
  pregreet?: boolean;
}

interface Transaction {
  qid: string;
  facts: FactSet;
  verdict: Verdict;
  from: string;
  rcpts: string[];
  output: CheckOutput;
  startedAt: number;
}

function newOutput(): CheckOutput {
  return { facts: new FactSet(), edits: emptyEdits() };
}

/** A backend reply as the client gets it: the backend's code, enhanced code and text. */
export function backendToReply(r: BackendReply): SmtpReply {
  const enhanced = r.enhanced || `${String(r.code)[0]}.0.0`;
  return new SmtpReply(r.code, enhanced, r.lines.join('\n') || 'Ok');
}

export class ClientSession {
  readonly rt: Runtime;
  readonly info: ConnectionInfo;
  readonly facts = new FactSet();
  readonly log: Logger;
  /** Score and fired rules of connect/helo, carried into each transaction. */
  connVerdict: Verdict = emptyVerdict();
  link: BackendLink | undefined;
  tx: Transaction | undefined;
  txCount = 0;
  /** Refused MAIL/RCPT commands on this connection (dictionary attacks): see limits.max_errors. */
  errors = 0;
  /** RCPTs refused for max_recipients (not errors up to a point, see #countingErrors). */
  overshoot = 0;
  helo = '';
  esmtp = false;
  tls: { version?: string; cipher?: string } | undefined;
  /** Inside MAIL..end of DATA reply: SIGTERM waits for this to clear. */
  busy = false;
  closed = false;
  readonly abort = new AbortController();
  readonly context: ConnectionContext;
  /** Called by front.ts when a drain is pending and this session goes idle. */
  onIdle: (() => void) | undefined;

  constructor(rt: Runtime, info: ConnectionInfo) {
    this.rt = rt;
    this.info = info;
    this.log = rt.logger.child({ cid: info.id, ip: info.ip });
    this.context = { id: info.id, front: 'smtp', notes: new Map() };
    this.facts.set('client.ip', info.ip);
    this.facts.set('client.port', info.port);
    this.facts.set('client.local_port', info.localPort);
    this.facts.set('client.proxied', info.proxied);
    if (info.proxyIp) this.facts.set('client.proxy_ip', info.proxyIp);
    if (info.pregreet !== undefined) this.facts.set('client.pregreet', info.pregreet);
  }

  /** Runs a stage's checks and rules; returns the reply to refuse with, or undefined to go on. */
  async #stage(stage: Stage, facts: FactSet, previous: Verdict, extra: { recipient?: string; output?: CheckOutput; message?: Spool } = {}): Promise<{ res: StageResult; refuse?: SmtpReply }> {
    const args: Parameters<typeof runStage>[0] = {
      stage,
      connection: this.context,
      checks: this.rt.checks,
      policy: this.rt.policy,
      facts,
      previous,
      output: extra.output ?? newOutput(),
      logger: this.log,
      signal: this.abort.signal,
    };
    if (extra.recipient !== undefined) args.recipient = extra.recipient;
    if (extra.message !== undefined) args.message = extra.message;
    const res = await runStage(args);
    if (res.failure) {
      const r = res.failure.outcome === 'reject' ? replies.rejected(`Message refused: check ${res.failure.check} failed`) : replies.checkFailed(res.failure.check);
      return { res, refuse: r };
    }
    const refuse = this.#refusal(res.verdict);
    return refuse ? { res, refuse } : { res };
  }

  /** The reply for a verdict that stops the stage (reject/tempfail), else undefined. */
  #refusal(v: Verdict): SmtpReply | undefined {
    if (v.action === 'reject') return this.#replyFor(v, replies.rejected());
    if (v.action === 'tempfail') return this.#replyFor(v, replies.tempfailed());
    return undefined;
  }

  #replyFor(v: Verdict, dflt: SmtpReply): SmtpReply {
    const r = v.reply;
    if (!r) return dflt;
    const code = r.code ?? dflt.code;
    const enhanced = r.enhanced ?? `${String(code)[0]}${dflt.enhanced.slice(1)}`;
    return new SmtpReply(code, enhanced, r.text ?? dflt.text);
  }

  // --- connect --------------------------------------------------------------------------------

  async onConnect(): Promise<SmtpReply | undefined> {
    const { res, refuse } = await this.#stage('connect', this.facts, emptyVerdict());
    this.connVerdict = res.verdict;
    if (refuse) this.#countRefusal('connect', res.verdict, refuse);
    return refuse;
  }

  // --- helo -----------------------------------------------------------------------------------

  async onHelo(name: string, esmtp: boolean): Promise<SmtpReply | undefined> {
    this.helo = name;
    this.esmtp = esmtp;
    this.facts.set('helo.name', name);
    this.facts.set('helo.esmtp', esmtp);
    // A second EHLO resets the transaction (RFC 5321 4.1.4): drop any backend transaction too.
    await this.#endTransaction();
    const { res, refuse } = await this.#stage('helo', this.facts, this.#connBase());
    this.connVerdict = res.verdict;
    if (refuse) this.#countRefusal('helo', res.verdict, refuse);
    return refuse;
  }

  /** Verdict of the connect stage, used as `previous` for helo (score carries forward). */
  #connBase(): Verdict {
    return this.connVerdict;
  }

  // --- mail -----------------------------------------------------------------------------------

  onMail(from: string, args: Record<string, string | true>): Promise<SmtpReply> {
    return this.#countingErrors(() => this.#onMail(from, args));
  }

  onRcpt(to: string, args: Record<string, string | true> = {}): Promise<SmtpReply> {
    return this.#countingErrors(() => this.#onRcpt(to, args));
  }

  /**
   * Counts refusals towards limits.max_errors. The limit itself is enforced in front.ts, before
   * smtp-server parses MAIL/RCPT/DATA, so that its own syntax refusals are covered too.
   */
  async #countingErrors(fn: () => Promise<SmtpReply>): Promise<SmtpReply> {
    try {
      return await fn();
    } catch (err) {
      // Recipients past max_recipients get 452 and are retried by the client in a new
      // transaction (RFC 5321 4.5.3.1.10); like Postfix (smtpd_recipient_overshoot_limit) they
      // only count as errors beyond 1000.
      const overshoot = err instanceof SmtpError && err.reply.code === 452 && err.reply.enhanced === '4.5.3' && ++this.overshoot <= 1000;
      if (err instanceof SmtpError && err.reply.code >= 400 && err.reply.code !== 421 && !overshoot) this.errors++;
      throw err;
    }
  }

  async #onMail(from: string, args: Record<string, string | true>): Promise<SmtpReply> {
    const rt = this.rt;
    if (rt.draining) throw new SmtpError(replies.shuttingDown());
    await this.#endTransaction();
    if (this.txCount >= rt.config.limits.max_messages_per_connection) {
      throw new SmtpError(new SmtpReply(421, '4.7.0', `Too many messages on one connection (at most ${rt.config.limits.max_messages_per_connection}), reconnect`));
    }
    // Parameters we do not offer are refused, not silently dropped (RFC 5321 4.1.1.11).
    const unknown = Object.keys(args).filter((k) => !MAIL_PARAMETERS.has(k.toUpperCase()));
    if (unknown.length > 0) throw new SmtpError(replies.unknownParameter(unknown.join(' ')));
    if (!asciiOk(from, args.SMTPUTF8 === true)) throw new SmtpError(replies.nonAsciiAddress());
    let addr = '';
    let domain = '';
    if (from !== '') {
      const p = parseAddress(from);
      if (!p) throw new SmtpError(replies.badSenderSyntax('expected user@domain'));
      addr = p.address;
      domain = p.domain;
    }
    this.txCount++;
    const facts = new FactSet(this.facts);
    if (this.tls) {
      facts.set('tls', true);
      if (this.tls.version) facts.set('tls.version', this.tls.version);
      if (this.tls.cipher) facts.set('tls.cipher', this.tls.cipher);
    } else facts.set('tls', false);
    facts.set('mail.from', addr);
    facts.set('mail.from_domain', domain);
    facts.set('mail.null_sender', addr === '');
    facts.set('mail.size_declared', typeof args.SIZE === 'string' ? Number(args.SIZE) || 0 : 0);
    facts.set('mail.body', typeof args.BODY === 'string' ? args.BODY.toUpperCase() : '');
    facts.set('mail.smtputf8', args.SMTPUTF8 === true);
    facts.set('mail.transaction', this.txCount);
    const tx: Transaction = {
      qid: newQueueId(),
      facts,
      verdict: this.connVerdict,
      from: addr,
      rcpts: [],
      output: newOutput(),
      startedAt: performance.now(),
    };
    this.tx = tx;
    this.busy = true;
    try {
      const { res, refuse } = await this.#stage('mail', facts, tx.verdict, { output: tx.output });
      tx.verdict = res.verdict;
      if (refuse) {
        this.#countRefusal('mail', res.verdict, refuse);
        this.tx = undefined;
        throw new SmtpError(refuse);
      }
      if (this.closed) throw new SmtpError(replies.localError('client gone'));
      const rdns = this.facts.get('client.rdns');
      const link = (this.link ??= rt.backend.link({ ip: this.info.ip, port: this.info.port, helo: this.helo, esmtp: this.esmtp, ...(typeof rdns === 'string' && rdns ? { rdns } : {}) }));
      let r: BackendReply;
      try {
        r = await this.#backend(() => link.mail(addr, args));
      } finally {
        // The client may have left while the backend answered: onClose() found no session to
        // release then, so release it here or the backend keeps an open transaction until its
        // own timeout.
        if (this.closed) {
          link.release();
          if (this.link === link) this.link = undefined;
        }
      }
      if (r.code >= 300) {
        this.tx = undefined;
        throw new SmtpError(backendToReply(r));
      }
      return backendToReply(r);
    } finally {
      if (!this.tx) this.#setIdle();
    }
  }

  // --- rcpt -----------------------------------------------------------------------------------

  async #onRcpt(to: string, args: Record<string, string | true>): Promise<SmtpReply> {
    const tx = this.tx;
    if (!tx) throw new SmtpError(new SmtpReply(503, '5.5.1', 'Error: need MAIL command'));
    // No RCPT parameter is offered (DSN is hidden): NOTIFY/ORCPT would be silently dropped.
    const unknown = Object.keys(args);
    if (unknown.length > 0) throw new SmtpError(replies.unknownParameter(unknown.join(' ')));
    if (!asciiOk(to, tx.facts.get('mail.smtputf8') === true)) throw new SmtpError(replies.nonAsciiAddress());
    const limits = this.rt.config.limits;
    if (tx.rcpts.length >= limits.max_recipients) throw new SmtpError(replies.tooManyRecipients(limits.max_recipients));
    // The domainless postmaster (RFC 5321 4.1.1.3) goes to our first domain.
    const target = to.toLowerCase() === 'postmaster' ? `postmaster@${this.rt.domains.values().next().value}` : to;
    const rv = checkRecipient(target, this.rt.domains);
    if (!rv.ok) {
      this.log.info({ qid: tx.qid, rcpt: to, why: rv.why }, 'recipient refused');
      throw new SmtpError(rv.kind === 'syntax' ? replies.badRecipientSyntax(rv.why) : rv.why === 'not our domain' ? replies.relayDenied(rv.domain || to) : replies.relayRouting(rv.why));
    }
    const address = rv.parsed.address;
    tx.facts.set('rcpt.address', address);
    tx.facts.set('rcpt.domain', rv.parsed.domain);
    const { res, refuse } = await this.#stage('rcpt', tx.facts, tx.verdict, { recipient: address, output: tx.output });
    if (refuse) {
      // A per-recipient refusal does not carry its score into the message.
      this.#countRefusal('rcpt', res.verdict, refuse);
      throw new SmtpError(refuse);
    }
    tx.verdict = res.verdict;
    const r = await this.#backend(() => this.#liveLink().rcpt(address));
    if (r.code >= 300) throw new SmtpError(backendToReply(r));
    tx.rcpts.push(address);
    return backendToReply(r);
  }

  // --- data -----------------------------------------------------------------------------------

  async onData(stream: Readable & { sizeExceeded?: boolean }): Promise<SmtpReply> {
    const tx = this.tx;
    const rt = this.rt;
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
    const started = performance.now();
    let action: Action | 'error' = 'tempfail';
    let reason = '';
    let backendReply = '';
    let reply: SmtpReply = replies.localError('no verdict');
    try {
      // Always drain the client's data, whatever happens: smtp-server replies only after the
      // stream ends (STYLE: stream, bound, drain).
      await pipeline(stream, spool);
      if (!tx) throw new SmtpError(new SmtpReply(503, '5.5.1', 'Error: need MAIL command'));
      if (spool.problem || stream.sizeExceeded) {
        const p = stream.sizeExceeded ? 'too-big' : spool.problem;
        reply =
          p === 'too-big' ? replies.messageTooBig(lim.max_message_bytes)
          : p === 'header-too-big' ? replies.headerTooBig(lim.max_header_bytes)
          : p === 'line-too-long' ? new SmtpReply(552, '5.3.4', `Message line longer than ${lim.max_line_bytes} bytes`)
          : p === 'nul-byte' ? replies.nulBytes()
          : replies.bareNewline();
        action = 'reject';
        reason = `limit: ${p}`;
        await this.link?.abort();
        return reply;
      }
      const facts = tx.facts;
      facts.delete('rcpt.address');
      facts.delete('rcpt.domain');
      facts.set('rcpt.addresses', tx.rcpts);
      facts.set('rcpt.count', tx.rcpts.length);
      messageFacts(spool, facts);
      facts.set('message.bare_newlines', spool.bareNewlines);
      facts.set('message.nul_bytes', spool.nulBytes);
      const { res, refuse } = await this.#stage('data', facts, tx.verdict, { output: tx.output, message: spool });
      const v = res.verdict;
      tx.verdict = v;
      reason = v.fired.map((f) => f.rule).join(',');
      if (refuse) {
        action = v.action === 'reject' || res.failure?.outcome === 'reject' ? 'reject' : 'tempfail';
        if (res.failure) reason = `check ${res.failure.check} failed: ${res.failure.error}`;
        reply = refuse;
        await this.link?.abort();
        return reply;
      }
      const final: Action = v.action === 'continue' ? 'accept' : v.action;
      action = final;
      if (final === 'accept') {
        const header = this.#outgoingHeader(tx, spool, v);
        const r = await this.#backend(() => this.#liveLink().data([header, spool.bodyStream()]));
        backendReply = `${r.code} ${r.enhanced} ${r.lines.join(' ')}`.trim();
        reply = backendToReply(r);
        if (r.code >= 300) action = r.code >= 500 ? 'reject' : 'tempfail';
        if (r.code >= 300) reason = `backend: ${backendReply}`;
        return reply;
      }
      await this.link?.abort();
      if (final === 'quarantine') {
        const header = this.#outgoingHeader(tx, spool, v);
        await rt.quarantine.put(
          {
            id: tx.qid,
            received: new Date().toISOString(),
            client: { ip: this.info.ip, helo: this.helo },
            from: tx.from,
            rcpts: tx.rcpts,
            size: spool.size,
            reason: reason || 'policy',
            score: v.score,
            rules: v.fired.map((f) => f.rule),
            facts: facts.toJSON(),
          },
          [header, spool.bodyStream()],
        );
        reply = replies.quarantined(tx.qid);
        return reply;
      }
      // discard: accepted and dropped on purpose (logged with the rules responsible).
      reply = replies.discarded(tx.qid);
      return reply;
    } catch (err) {
      if (err instanceof SmtpError) {
        reply = err.reply;
      } else if ((err as { code?: string }).code === 'ECONNECTION' || this.closed) {
        // The client went away mid-DATA: an ordinary outcome, nobody reads the reply.
        reply = replies.clientGone();
        reason = 'client disconnected during DATA';
      } else {
        this.log.error({ err: (err as Error).message, qid: tx?.qid }, 'error while processing message');
        reply = replies.localError('internal error');
        action = 'error';
      }
      if (reply.code >= 400) action = reply.code >= 500 ? 'reject' : 'tempfail';
      await this.link?.abort();
      return reply;
    } finally {
      spool.release();
      const durationS = (performance.now() - started) / 1000;
      metrics.messagesTotal.inc({ action });
      metrics.messageDuration.observe(durationS);
      if (tx) {
        rt.capture?.(tx.facts, tx.verdict, action, tx.qid);
        this.log.info(
          {
            qid: tx.qid,
            helo: this.helo,
            from: tx.from,
            rcpts: tx.rcpts,
            size: spool.size,
            action,
            score: tx.verdict.score,
            rules: tx.verdict.fired.map((f) => `${f.rule}(${f.score})`),
            reason: reason || undefined,
            backend: backendReply || undefined,
            reply: reply.toString(),
            duration_ms: Math.round(durationS * 1000 * 10) / 10,
          },
          'message',
        );
      }
      this.tx = undefined;
      this.#setIdle();
    }
  }

  /** Header block to relay: Received + check/rule headers on top, distrusted fields removed. */
  #outgoingHeader(tx: Transaction, spool: Spool, v: Verdict): Buffer {
    const prepend: Array<{ name: string; value: string }> = [];
    if (this.rt.config.smtp.add_received) prepend.push({ name: 'Received', value: this.#received(tx) });
    prepend.push(...tx.output.edits.addHeaders);
    for (const h of v.addHeaders) prepend.push(h);
    const cfg = this.rt.config;
    const remove = [...tx.output.edits.removeHeaders, ...this.rt.stripHeaders, buildTransactionStrip({ authservIds: [cfg.hostname, ...(cfg.auth.authserv_id ? [cfg.auth.authserv_id] : [])] })];
    let fields = spool.headers;
    if (v.tagSubject) {
      const tag = v.tagSubject;
      fields = fields.map((f) =>
        f.name.toLowerCase() === 'subject' && !f.value.startsWith(tag) ? { name: f.name, value: `${tag} ${f.value}`, raw: `${f.name}: ${tag}${f.raw.slice(f.name.length + 1)}` } : f,
      );
    }
    return rewriteHeaderBlock(fields, spool.headerTerminated, prepend, remove);
  }

  #received(tx: Transaction): string {
    const proto = `${this.esmtp ? 'ESMTP' : 'SMTP'}${this.tls ? 'S' : ''}`;
    const ip = this.info.ip.includes(':') ? `IPv6:${this.info.ip}` : this.info.ip;
    const forOne = tx.rcpts.length === 1 ? ` for <${tx.rcpts[0]}>` : '';
    const tlsInfo = this.tls ? ` (version=${this.tls.version ?? '?'} cipher=${this.tls.cipher ?? '?'})` : '';
    return `from ${this.helo || 'unknown'} ([${ip}]) by ${this.rt.config.hostname} (mailgate) with ${proto}${tlsInfo} id ${tx.qid}${forOne}; ${new Date().toUTCString().replace('GMT', '+0000')}`;
  }

  /** Runs a backend call, turning failures of the backend leg into a 4xx for the client. */
  async #backend(fn: () => Promise<BackendReply>): Promise<BackendReply> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof BackendError) {
        this.log.warn({ err: err.message, kind: err.kind }, 'backend failure');
        this.link?.release();
        this.link = undefined;
        throw new SmtpError(err.kind === 'timeout' ? replies.backendTimeout() : replies.backendUnavailable(err.kind === 'connect' ? 'connection refused' : err.kind));
      }
      throw err;
    }
  }

  /** The backend link of this transaction; gone after a backend failure (then: 4xx, not a TypeError). */
  #liveLink(): BackendLink {
    if (!this.link) throw new BackendError('closed', 'backend connection lost earlier in this transaction');
    return this.link;
  }

  /** RSET (RFC 5321 4.1.1.5): the transaction ends here and at the backend. */
  async onRset(): Promise<void> {
    await this.#endTransaction();
  }

  async #endTransaction(): Promise<void> {
    if (this.tx) this.tx = undefined;
    await this.link?.abort();
    this.#setIdle();
  }

  #setIdle(): void {
    if (this.busy && !this.tx) {
      this.busy = false;
      this.onIdle?.();
    }
  }

  #countRefusal(stage: Stage, v: Verdict, reply: SmtpReply): void {
    metrics.refusals.inc({ stage, class: reply.isTemp ? '4xx' : '5xx' });
    this.log.info({ stage, reply: reply.toString(), score: v.score, rules: v.fired.map((f) => `${f.rule}(${f.score})`) }, 'refused');
  }

  onClose(): void {
    this.closed = true;
    // Frees this connection's slot in the shared concurrency limit now, not at lease expiry.
    releaseConcurrency(this.facts);
    this.abort.abort(new Error('client closed the connection'));
    this.link?.release();
    this.link = undefined;
    this.tx = undefined;
    this.#setIdle();
  }
}

/** MAIL parameters mailgate offers (EHLO: SIZE, 8BITMIME, SMTPUTF8; REQUIRETLS once secure). */
const MAIL_PARAMETERS = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'REQUIRETLS']);

/**
 * RFC 6531 3.2: without SMTPUTF8 the local part must be ASCII. smtp-server decodes the command as
 * UTF-8 (undecodable bytes become U+FFFD, which is never valid) and turns xn-- domains into
 * Unicode itself, so only the local part is judged for ASCII.
 */
function asciiOk(address: string, smtputf8: boolean): boolean {
  if (address.includes('\uFFFD')) return false;
  if (smtputf8) return true;
  const at = address.lastIndexOf('@');
  return /^[\x00-\x7F]*$/.test(at < 0 ? address : address.slice(0, at));
}

// Queue ids: time-ordered and unique per process without a crypto call per message (like
// Postfix's long queue ids): base-36 milliseconds + a per-process random part + a counter.
const QID_PROCESS = randomBytes(3).toString('hex').toUpperCase();
let qidCounter = 0;
function newQueueId(): string {
  qidCounter = (qidCounter + 1) % 1_679_616;
  return `${Date.now().toString(36).toUpperCase()}${QID_PROCESS}${qidCounter.toString(36).toUpperCase().padStart(4, '0')}`;
}
