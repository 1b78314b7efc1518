// The transaction core: one connection's flow through the stages — connect, helo, mail, rcpt,
// data — for every front (SMTP proxy, milter, `rules test`). It owns the envelope facts
// (normalised once, net/address.ts), runs each stage's checks and rules, mirrors the transaction
// on the delivery link (so each RCPT gets the backend's own answer), applies the edits once after
// the verdict (finalize), delivers, quarantines or discards, and returns the reply. Fronts only
// translate their protocol into these calls and the replies back.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { emptyEdits, type Check, type CheckOutput, type ConnectionContext, type Edits } from './check.ts';
import { FactSet, type FactValue } from './facts.ts';
import type { Stage } from './stages.ts';
import { runStage, type StageResult } from './runner.ts';
import { emptyVerdict, type Action, type Verdict } from './verdict.ts';
import { SmtpError, SmtpReply, replies } from './reply.ts';
import { refusalFor } from './outcome.ts';
import { finalizeHeader, mergeEdits, type FinalizedHeader } from './finalize.ts';
import { BackendError, type Backend, type BackendReply, type DeliveryLink, type QuarantineSink } from './delivery.ts';
import { messageFacts } from './message-facts.ts';
import type { Runtime } from './runtime.ts';
import { backendReplyAttrs, endMessage, endStage, endUnfinished, messageSpan, stageSpan, traced } from './tracing.ts';
import type { Span } from '../trace/span.ts';
import type { Spool } from '../message/spool.ts';
import { checkRecipient, parseAddress } from '../net/address.ts';
import { metrics } from '../metrics/registry.ts';

export interface ConnectionInfo {
  id: string;
  ip: string;
  port: number;
  localPort: number;
  proxied: boolean;
  proxyIp?: string;
  pregreet?: boolean;
  /** Verified reverse DNS name, when the front already knows it (milter: {client_name}). */
  rdns?: string;
}

export interface TlsInfo {
  version?: string;
  cipher?: string;
}

interface Transaction {
  qid: string;
  facts: FactSet;
  verdict: Verdict;
  from: string;
  /** Accepted recipients as the client gave them (normalised). */
  rcpts: string[];
  output: CheckOutput;
  startedAt: number;
  /** The message's root span (tracing off: the shared no-op span). */
  span: Span;
}

/** The end of a transaction as the front needs it: the reply, what happened, and the edits made. */
export interface DataResult {
  reply: SmtpReply;
  action: Action | 'error';
  /** The finalized header (edits applied, signers run), when the message was delivered or held. */
  final?: FinalizedHeader;
  /** The merged edits behind `final` (for fronts that edit in place: removals, tag, envelope). */
  edits?: Edits;
  /** The transaction's queue id. */
  qid?: string;
  /** Envelope as delivered (after rewrites). */
  envelope?: { from: string; rcpts: string[] };
  verdict?: Verdict;
}

/** A spool problem found while the front received the message (limits, bare line endings). */
export type SpoolProblem = 'too-big' | 'header-too-big' | 'line-too-long' | 'bare-newline' | 'nul-byte' | 'client-gone' | string;

/** A backend reply as the client gets it: the backend's code, enhanced code and text. */
export function backendToReply(r: BackendReply): SmtpReply {
  const enhanced = r.enhanced || `${String(r.code)[0]}.0.0`;
  return new SmtpReply(r.code, enhanced, r.lines.join('\n') || 'Ok');
}

/** How a front differs: where mail goes and what the front's own MTA already does. */
export interface CoreOptions {
  front?: ConnectionContext['front'];
  /** Next hop instead of the runtime's (the milter's MTA delivers itself: a pass-through). */
  backend?: Backend;
  /** Where held mail goes; `null` = the front holds it (milter → Postfix HOLD). Default the runtime's. */
  quarantine?: QuarantineSink | null;
  /** Refuse recipients outside our domains (default true; the milter's MTA does relay control). */
  relayControl?: boolean;
  /** Add our Received trace field when smtp.add_received (default true; the milter's MTA adds its own). */
  trace?: boolean;
  /** Apply limits.max_messages_per_connection (default true). */
  messageLimit?: boolean;
}

export class ConnectionCore {
  readonly rt: Runtime;
  readonly info: ConnectionInfo;
  readonly facts = new FactSet();
  readonly log: Logger;
  readonly context: ConnectionContext;
  /** Score and fired rules of connect/helo, carried into each transaction. */
  connVerdict: Verdict = emptyVerdict();
  link: DeliveryLink | undefined;
  tx: Transaction | undefined;
  txCount = 0;
  helo = '';
  esmtp = false;
  tls: TlsInfo | undefined;
  /** Inside MAIL..end of DATA reply: a drain (SIGTERM) waits for this to clear. */
  busy = false;
  closed = false;
  /** Aborted when the client goes; made when a check first asks for its signal (most never do). */
  #abort: AbortController | undefined;
  /** Called when a drain is pending and this connection goes idle. */
  onIdle: (() => void) | undefined;

  readonly #opts: CoreOptions;
  #connOutput: CheckOutput | undefined;
  #openedAt = performance.now();
  /** Per-connection summary for the disconnect line: final actions of its messages, refusals. */
  readonly #summary = { messages: 0, refusals: 0, actions: {} as Record<string, number> };

  constructor(rt: Runtime, info: ConnectionInfo, opts: CoreOptions | ConnectionContext['front'] = 'smtp') {
    this.rt = rt;
    this.info = info;
    this.#opts = typeof opts === 'string' ? { front: opts } : opts;
    const front = this.#opts.front ?? 'smtp';
    this.log = rt.logger.child({ cid: info.id, ip: info.ip, ...(front === 'smtp' ? {} : { front }) });
    this.context = { id: info.id, front, notes: new Map() };
    this.facts.set('client.ip', info.ip);
    this.facts.set('client.port', info.port);
    this.facts.set('client.local_port', info.localPort);
    this.facts.set('client.proxied', info.proxied);
    if (info.proxyIp) this.facts.set('client.proxy_ip', info.proxyIp);
    if (info.pregreet !== undefined) this.facts.set('client.pregreet', info.pregreet);
  }

  /** Runs a stage's checks and rules; returns the stage result and the refusal, if any. */
  async #stage(
    stage: Stage,
    facts: FactSet,
    previous: Verdict,
    extra: { recipient?: string; output?: CheckOutput; message?: Spool } = {},
  ): Promise<{ res: StageResult; refuse?: SmtpReply }> {
    const span = stageSpan(this.rt, stage, this.tx?.span, this);
    const args: Parameters<typeof runStage>[0] = {
      stage,
      connection: this.context,
      checks: this.rt.checks,
      policy: this.rt.policy,
      facts,
      previous,
      output: extra.output ?? this.#connectionOutput(),
      logger: this.log,
      // Called only when a check wants its signal: no controller (and no abort event at the
      // disconnect) for a connection whose checks never ask.
      getSignal: this.#signalFn,
      span,
    };
    if (extra.recipient !== undefined) args.recipient = extra.recipient;
    if (extra.message !== undefined) args.message = extra.message;
    if (this.rt.overrides) args.overrides = this.rt.overrides;
    const ran = runStage(args);
    const res = ran instanceof Promise ? await ran : ran;
    this.rt.onStage?.(stage, res.verdict, facts, extra.recipient);
    const refuse = refusalFor(stage, res);
    endStage(span, res, refuse, extra.recipient);
    if (refuse) this.#countRefusal(stage, res.verdict, refuse);
    return refuse ? { res, refuse } : { res };
  }

  readonly #signalFn = (): AbortSignal => this.#connectionSignal();

  #connectionSignal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController();
      if (this.closed) this.#abort.abort(CLIENT_GONE);
    }
    return this.#abort.signal;
  }

  /**
   * The output of connect and helo: one per connection (its facts are moved out by each stage).
   * Edits made there have no message to apply to and are dropped, as before.
   */
  #connectionOutput(): CheckOutput {
    const o = (this.#connOutput ??= { facts: new FactSet(), edits: emptyEdits() });
    const e = o.edits;
    if (e.addHeaders.length || e.removeHeaders.length || e.signers.length || e.rcptRewrites.size || e.tagSubject !== undefined || e.senderRewrite !== undefined)
      o.edits = emptyEdits();
    return o;
  }

  // --- connect, helo --------------------------------------------------------------------------

  async connect(): Promise<SmtpReply | undefined> {
    this.#openedAt = performance.now();
    this.log.info(
      { port: this.info.port, local_port: this.info.localPort, ...(this.info.proxied ? { proxied: true, proxy_ip: this.info.proxyIp } : {}) },
      'connect',
    );
    const { res, refuse } = await this.#stage('connect', this.facts, emptyVerdict());
    this.connVerdict = res.verdict;
    return refuse;
  }

  async heloStage(name: string, esmtp: boolean): Promise<SmtpReply | undefined> {
    this.helo = name;
    this.esmtp = esmtp;
    this.facts.set('helo.name', name);
    this.facts.set('helo.esmtp', esmtp);
    // A second EHLO resets the transaction (RFC 5321 4.1.4): drop any backend transaction too.
    await this.reset();
    const { res, refuse } = await this.#stage('helo', this.facts, this.connVerdict);
    this.connVerdict = res.verdict;
    return refuse;
  }

  // --- mail -----------------------------------------------------------------------------------

  /** MAIL FROM. Returns the reply: 2xx to go on, else the refusal (the transaction is gone). */
  async mail(from: string, params: Record<string, string | true>, extra?: ReadonlyMap<string, FactValue>): Promise<SmtpReply> {
    const rt = this.rt;
    if (rt.draining) return replies.shuttingDown();
    await this.reset();
    const max = rt.config.limits.max_messages_per_connection;
    if (this.#opts.messageLimit !== false && this.txCount >= max) return replies.tooManyMessages(max);
    // Parameters we do not offer are refused, not silently dropped (RFC 5321 4.1.1.11).
    const unknown = Object.keys(params).filter((k) => !MAIL_PARAMETERS.has(k.toUpperCase()));
    if (unknown.length > 0) return replies.unknownParameter(unknown.join(' '));
    if (!asciiOk(from, params.SMTPUTF8 === true)) return replies.nonAsciiAddress();
    let addr = '';
    let domain = '';
    if (from !== '') {
      const p = parseAddress(from);
      if (!p) return replies.badSenderSyntax('expected user@domain');
      addr = p.address;
      domain = p.domain;
    }
    this.txCount++;
    const facts = new FactSet(this.facts);
    facts.set('tls', this.tls !== undefined);
    if (this.tls?.version) facts.set('tls.version', this.tls.version);
    if (this.tls?.cipher) facts.set('tls.cipher', this.tls.cipher);
    facts.set('mail.from', addr);
    facts.set('mail.from_domain', domain);
    facts.set('mail.null_sender', addr === '');
    facts.set('mail.size_declared', typeof params.SIZE === 'string' ? Number(params.SIZE) || 0 : 0);
    facts.set('mail.body', typeof params.BODY === 'string' ? params.BODY.toUpperCase() : '');
    facts.set('mail.smtputf8', params.SMTPUTF8 === true);
    facts.set('mail.transaction', this.txCount);
    // Facts the front knows and the core cannot (milter macros: TLS of Postfix's session, queue id).
    if (extra) for (const [k, v] of extra) facts.set(k, v);
    const tx: Transaction = {
      qid: newQueueId(),
      facts,
      verdict: this.connVerdict,
      from: addr,
      rcpts: [],
      output: { facts: new FactSet(), edits: emptyEdits() },
      startedAt: performance.now(),
      span: messageSpan(rt, this),
    };
    this.tx = tx;
    this.busy = true;
    try {
      const { res, refuse } = await this.#stage('mail', facts, tx.verdict, { output: tx.output });
      tx.verdict = res.verdict;
      if (refuse) {
        this.tx = undefined;
        return refuse;
      }
      if (this.closed) {
        this.tx = undefined;
        return replies.localError('client gone');
      }
      // The verified rDNS name goes to the backend (XCLIENT NAME), so its hostname rules work.
      const rdnsFact = this.facts.get('client.rdns');
      const rdns = this.info.rdns ?? (typeof rdnsFact === 'string' && rdnsFact ? rdnsFact : undefined);
      const link = (this.link ??= (this.#opts.backend ?? rt.backend).link({
        ip: this.info.ip,
        port: this.info.port,
        helo: this.helo,
        esmtp: this.esmtp,
        ...(rdns ? { rdns } : {}),
      }));
      const sender = tx.output.edits.senderRewrite ?? addr;
      let r: BackendReply;
      try {
        r = await link.mail(sender, params);
      } catch (err) {
        this.tx = undefined;
        return this.#backendFailure(err);
      } finally {
        // The client may have left while the backend answered: release the backend session here,
        // or the backend keeps an open transaction until its own timeout.
        if (this.closed) {
          link.release();
          if (this.link === link) this.link = undefined;
        }
      }
      if (r.code >= 300) this.tx = undefined;
      return backendToReply(r);
    } finally {
      if (!this.tx) endUnfinished(tx.span, tx.qid, 'MAIL refused');
      if (!this.tx) this.#setIdle();
    }
  }

  // --- rcpt -----------------------------------------------------------------------------------

  /** RCPT TO: our own checks, then the backend's answer for this recipient. */
  async rcpt(to: string, params: Record<string, string | true> = {}): Promise<SmtpReply> {
    const tx = this.tx;
    if (!tx) return replies.needMail();
    // The backend dropped earlier in this transaction: every later command gets a 4xx, never an
    // internal error (issue 14, item 8); the client retries the message.
    if (!this.link) return replies.backendUnavailable('connection lost earlier in this transaction');
    // No RCPT parameter is offered (DSN is hidden): NOTIFY/ORCPT would be silently dropped.
    const unknown = Object.keys(params);
    if (unknown.length > 0) return replies.unknownParameter(unknown.join(' '));
    if (!asciiOk(to, tx.facts.get('mail.smtputf8') === true)) return replies.nonAsciiAddress();
    const limits = this.rt.config.limits;
    if (tx.rcpts.length >= limits.max_recipients) return replies.tooManyRecipients(limits.max_recipients);
    // The domainless postmaster (RFC 5321 4.1.1.3) goes to our first domain.
    const target = to.toLowerCase() === 'postmaster' ? `postmaster@${this.rt.domains.values().next().value}` : to;
    const rv = this.#opts.relayControl === false ? syntaxOnly(target) : checkRecipient(target, this.rt.domains);
    if (!rv.ok) {
      this.log.info({ qid: tx.qid, rcpt: to, why: rv.why }, 'recipient refused');
      if (rv.kind === 'syntax') return replies.badRecipientSyntax(rv.why);
      // %-hack and bang paths are refused for what they are, not as a foreign domain.
      return rv.why === 'not our domain' ? replies.relayDenied(rv.domain || to) : replies.relayRouting(rv.why);
    }
    const address = rv.parsed.address;
    tx.facts.set('rcpt.address', address);
    tx.facts.set('rcpt.domain', rv.parsed.domain);
    const { res, refuse } = await this.#stage('rcpt', tx.facts, tx.verdict, { recipient: address, output: tx.output });
    // A per-recipient refusal does not carry its score into the message.
    if (refuse) return refuse;
    tx.verdict = res.verdict;
    // An envelope edit (e.g. a BATV tag stripped) is what the backend sees and answers for.
    const delivered = tx.output.edits.rcptRewrites.get(address) ?? address;
    let r: BackendReply;
    try {
      r = await this.link.rcpt(delivered);
    } catch (err) {
      return this.#backendFailure(err);
    }
    if (r.code < 300) tx.rcpts.push(address);
    return backendToReply(r);
  }

  // --- data -----------------------------------------------------------------------------------

  /**
   * End of DATA: the front has spooled the message (with `problem` set when a limit was hit).
   * Runs the data stage, then finalize and delivery; returns the reply and what was done.
   */
  async data(
    spool: Spool,
    problem?: SpoolProblem,
    extra?: ReadonlyMap<string, FactValue>,
    /** Given the reply once it is decided, before the metrics, capture and log line are written. */
    onReply?: (reply: SmtpReply) => void,
  ): Promise<DataResult> {
    const tx = this.tx;
    const rt = this.rt;
    const lim = rt.config.limits;
    const started = performance.now();
    const result: DataResult = { reply: replies.localError('no verdict'), action: 'tempfail' };
    let reason = '';
    let backendReply = '';
    try {
      if (!tx) {
        result.reply = replies.needMail();
        return result;
      }
      if (!this.link) {
        result.reply = replies.backendUnavailable('connection lost earlier in this transaction');
        return result;
      }
      if (problem === 'client-gone') {
        result.reply = replies.clientGone();
        reason = 'client disconnected during DATA';
        await this.link.abort();
        return result;
      }
      if (problem) {
        result.reply =
          problem === 'too-big'
            ? replies.messageTooBig(lim.max_message_bytes)
            : problem === 'header-too-big'
              ? replies.headerTooBig(lim.max_header_bytes)
              : problem === 'line-too-long'
                ? replies.messageLineTooLong(lim.max_line_bytes)
                : problem === 'nul-byte'
                  ? replies.nulBytes()
                  : replies.bareNewline();
        result.action = 'reject';
        reason = `limit: ${problem}`;
        await this.link.abort();
        return result;
      }
      const facts = tx.facts;
      result.qid = tx.qid;
      if (extra) for (const [k, v] of extra) facts.set(k, v);
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
      result.verdict = v;
      reason = v.fired.map((f) => f.rule).join(',');
      if (refuse) {
        result.action = refuse.isPerm ? 'reject' : 'tempfail';
        if (res.failure) reason = `check ${res.failure.check} failed: ${res.failure.error}`;
        result.reply = refuse;
        await this.link.abort();
        return result;
      }
      const action: Action = v.action === 'continue' ? 'accept' : v.action;
      result.action = action;
      if (action === 'discard') {
        // Accepted and dropped on purpose (logged with the rules responsible).
        await this.link.abort();
        result.reply = replies.discarded(tx.qid);
        return result;
      }
      const { final, edits } = await traced(tx.span, 'finalize', () => this.#finalize(tx, spool, v));
      result.final = final;
      result.edits = edits;
      result.envelope = { from: tx.output.edits.senderRewrite ?? tx.from, rcpts: tx.rcpts.map((r) => tx.output.edits.rcptRewrites.get(r) ?? r) };
      if (action === 'accept') {
        let r: BackendReply;
        try {
          const link = this.link;
          r = await traced(tx.span, 'backend', () => link.data([final.block, ...spool.bodyParts()]), backendReplyAttrs);
        } catch (err) {
          result.reply = this.#backendFailure(err);
          result.action = 'tempfail';
          reason = `backend: ${(err as Error).message}`;
          return result;
        }
        backendReply = `${r.code} ${r.enhanced} ${r.lines.join(' ')}`.trim();
        result.reply = backendToReply(r);
        if (r.code >= 300) {
          result.action = r.code >= 500 ? 'reject' : 'tempfail';
          reason = `backend: ${backendReply}`;
        }
        return result;
      }
      // quarantine
      await this.link.abort();
      const sink = this.#opts.quarantine === null ? undefined : (this.#opts.quarantine ?? rt.quarantine);
      if (!sink) {
        // The front holds the message itself (milter: Postfix's hold queue).
        result.reply = replies.quarantined(tx.qid);
        return result;
      }
      try {
        await traced(tx.span, 'quarantine', () =>
          sink.put(
            {
              id: tx.qid,
              received: new Date().toISOString(),
              client: { ip: this.info.ip, port: this.info.port, helo: this.helo, ...(this.info.rdns ? { rdns: this.info.rdns } : {}) },
              ...(this.tls
                ? { tls: { ...(this.tls.version ? { protocol: this.tls.version } : {}), ...(this.tls.cipher ? { cipher: this.tls.cipher } : {}) } }
                : {}),
              from: tx.from,
              rcpts: tx.rcpts,
              size: spool.size,
              reason: reason || 'policy',
              score: v.score,
              rules: v.fired.map((f) => f.rule),
              ...(typeof facts.get('message.subject') === 'string' ? { subject: facts.get('message.subject') as string } : {}),
              facts: facts.toJSON(),
            },
            [final.block, spool.bodyStream()],
          ),
        );
      } catch (err) {
        // Never 250 without a durable copy: a full or failing quarantine is a 4xx.
        this.log.error({ err: (err as Error).message, qid: tx.qid }, 'quarantine write failed');
        result.reply = err instanceof SmtpError ? err.reply : replies.localError('quarantine unavailable');
        result.action = result.reply.isPerm ? 'reject' : 'tempfail';
        reason = `quarantine: ${(err as Error).message}`;
        return result;
      }
      result.reply = replies.quarantined(tx.qid);
      return result;
    } catch (err) {
      if ((err as { code?: string }).code === 'ECONNECTION' || this.closed) {
        // The client went away mid-DATA: an ordinary outcome, nobody reads the reply.
        result.reply = replies.clientGone();
        reason = 'client disconnected during DATA';
      } else {
        this.log.error({ err: (err as Error).message, stack: (err as Error).stack, qid: tx?.qid }, 'error while processing message');
        result.reply = replies.localError('internal error');
        result.action = 'error';
      }
      if (result.action !== 'error') result.action = result.reply.isPerm ? 'reject' : 'tempfail';
      await this.link?.abort();
      return result;
    } finally {
      const durationS = (performance.now() - started) / 1000;
      onReply?.(result.reply);
      metrics.messagesTotal.inc({ action: result.action, front: this.context.front });
      metrics.messageDuration.observe({ front: this.context.front }, durationS);
      if (tx) {
        rt.capture?.(tx.facts, tx.verdict, result.action, tx.qid);
        this.#summary.messages++;
        this.#summary.actions[result.action] = (this.#summary.actions[result.action] ?? 0) + 1;
        const subject = tx.facts.get('message.subject');
        const messageId = tx.facts.get('message.message_id');
        // Built field by field: each conditional spread made and copied a temporary object. The
        // key order is the line's order as before (README "Logs").
        const line: Record<string, unknown> = { qid: tx.qid, helo: this.helo, from: tx.from, rcpts: tx.rcpts, size: spool.size };
        if (typeof messageId === 'string' && messageId) line.message_id = messageId.slice(0, 200);
        if (typeof subject === 'string' && subject) line.subject = subject.length > 100 ? `${subject.slice(0, 100)}…` : subject;
        if (this.tls) line.tls = `${this.tls.version ?? '?'} ${this.tls.cipher ?? '?'}`;
        line.action = result.action;
        line.score = tx.verdict.score;
        line.rules = tx.verdict.fired.map((f) => `${f.rule}(${f.score})`);
        if (reason) line.reason = reason;
        if (backendReply) line.backend = backendReply;
        line.reply = result.reply.toString();
        line.duration_ms = Math.round(durationS * 1000 * 10) / 10;
        addLoggedFacts(line, rt.checks, tx.facts);
        this.log.info(line, 'message');
      }
      if (tx?.span.recording)
        endMessage(tx.span, {
          qid: tx.qid,
          helo: this.helo,
          from: tx.from,
          rcpts: tx.rcpts,
          size: spool.size,
          action: result.action,
          verdict: tx.verdict,
          reply: result.reply,
          reason,
        });
      // Only this transaction's: a front may have started the next one already (milter abort).
      if (this.tx === tx) this.tx = undefined;
      this.#setIdle();
    }
  }

  /** Applies every edit once (checks' then the rules'), then the signers, over the header block. */
  async #finalize(tx: Transaction, spool: Spool, v: Verdict): Promise<{ final: FinalizedHeader; edits: Edits }> {
    const edits = emptyEdits();
    mergeEdits(edits, { removeHeaders: [...this.rt.stripHeaders] });
    mergeEdits(edits, tx.output.edits);
    mergeEdits(edits, { addHeaders: v.addHeaders, ...(v.tagSubject !== undefined ? { tagSubject: v.tagSubject } : {}) });
    const trace = this.#opts.trace !== false && this.rt.config.smtp.add_received ? [{ name: 'Received', value: this.#received(tx) }] : [];
    const final = await finalizeHeader({ fields: spool.headers, headerTerminated: spool.headerTerminated, edits, trace, original: spool.headerBytes });
    return { final, edits };
  }

  #received(tx: Transaction): string {
    const proto = `${this.esmtp ? 'ESMTP' : 'SMTP'}${this.tls ? 'S' : ''}`;
    const ip = this.info.ip.includes(':') ? `IPv6:${this.info.ip}` : this.info.ip;
    const forOne = tx.rcpts.length === 1 ? ` for <${tx.rcpts[0]}>` : '';
    const tlsInfo = this.tls ? ` (version=${this.tls.version ?? '?'} cipher=${this.tls.cipher ?? '?'})` : '';
    return `from ${this.helo || 'unknown'} ([${ip}]) by ${this.rt.config.hostname} (mailgate) with ${proto}${tlsInfo} id ${tx.qid}${forOne}; ${new Date().toUTCString().replace('GMT', '+0000')}`;
  }

  /** A failure of the delivery leg itself becomes a 4xx for the client; the link is dropped. */
  #backendFailure(err: unknown): SmtpReply {
    if (!(err instanceof BackendError)) throw err;
    this.log.warn({ err: err.message, kind: err.kind }, 'backend failure');
    this.link?.release();
    this.link = undefined;
    // The backend transaction is gone: later commands of this transaction get 4xx (rcpt, data).
    return err.kind === 'timeout' ? replies.backendTimeout() : replies.backendUnavailable(err.kind === 'connect' ? 'connection refused' : err.kind);
  }

  /** RSET (or a new EHLO, or MAIL after a finished transaction): the open transaction ends here and at the backend. */
  async reset(): Promise<void> {
    if (this.tx) endUnfinished(this.tx.span, this.tx.qid, 'reset');
    this.tx = undefined;
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
    this.#summary.refusals++;
    metrics.refusals.inc({ stage, class: reply.isTemp ? '4xx' : '5xx', front: this.context.front });
    this.log.info({ stage, reply: reply.toString(), score: v.score, rules: v.fired.map((f) => `${f.rule}(${f.score})`) }, 'refused');
  }

  /** The connection ended: every check's disconnect step runs (concurrency slots freed now). */
  async disconnect(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // One summary line per connection: how long, what it sent, what became of it.
    this.log.info(
      {
        duration_ms: Math.round(performance.now() - this.#openedAt),
        helo: this.helo || undefined,
        transactions: this.txCount,
        messages: this.#summary.messages,
        ...(this.#summary.messages > 0 ? { actions: this.#summary.actions } : {}),
        refusals: this.#summary.refusals,
        ...(this.tls ? { tls: `${this.tls.version ?? '?'} ${this.tls.cipher ?? '?'}` } : {}),
      },
      'disconnect',
    );
    this.#abort?.abort(CLIENT_GONE);
    this.link?.release();
    this.link = undefined;
    if (this.tx) endUnfinished(this.tx.span, this.tx.qid, 'client gone');
    this.tx = undefined;
    this.#setIdle();
    for (const c of this.rt.checks) {
      if (!c.disconnect) continue;
      try {
        await c.disconnect(this.context);
      } catch (err) {
        this.log.warn({ check: c.name, err: (err as Error).message }, 'check disconnect step failed');
      }
    }
  }
}

/** The abort reason of every ended connection: one Error, not a stack trace per connection. */
const CLIENT_GONE = new Error('client closed the connection');

const logNames = new WeakMap<readonly Check[], string[]>();

/** The facts checks asked to have on the per-message log line (FactSpec.log), when set. */
function addLoggedFacts(out: Record<string, unknown>, checks: readonly Check[], facts: FactSet): void {
  let names = logNames.get(checks);
  if (!names) {
    names = checks.flatMap((c) => c.facts.filter((f) => f.log).map((f) => f.name));
    logNames.set(checks, names);
  }
  for (const n of names) {
    const v = facts.get(n);
    if (v !== undefined && v !== '') out[n] = v;
  }
}

/** Recipient syntax only (the front's MTA does relay control): same shape as checkRecipient's answer. */
function syntaxOnly(addr: string): ReturnType<typeof checkRecipient> {
  const p = parseAddress(addr);
  return p ? { ok: true, parsed: p } : { ok: false, kind: 'syntax', why: 'expected user@domain', domain: '' };
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
  const local = at < 0 ? address : address.slice(0, at);
  for (let i = 0; i < local.length; i++) if (local.charCodeAt(i) > 0x7f) return false;
  return true;
}

// Queue ids: time-ordered and unique per process without a crypto call per message (like
// Postfix's long queue ids): base-36 milliseconds + a per-process random part + a counter.
const QID_PROCESS = randomBytes(3).toString('hex').toUpperCase();
let qidCounter = 0;
export function newQueueId(): string {
  qidCounter = (qidCounter + 1) % 1_679_616;
  return `${Date.now().toString(36).toUpperCase()}${QID_PROCESS}${qidCounter.toString(36).toUpperCase().padStart(4, '0')}`;
}
