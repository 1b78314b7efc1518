// The milter pipeline adapter over today's pieces: builds facts like src/smtp/session.ts does,
// runs each stage with runStage on the gateway's Runtime (checks, policy), spools the message
// with the same limits. The transaction core (issue 9) replaces this one file.
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { FactSet, type FactValue } from '../../pipeline/facts.ts';
import type { Stage } from '../../pipeline/stages.ts';
import { emptyEdits, type CheckOutput, type ConnectionContext } from '../../pipeline/check.ts';
import { runStage } from '../../pipeline/runner.ts';
import { emptyVerdict, type Action, type Verdict } from '../../rules/verdict.ts';
import { Spool } from '../../message/spool.ts';
import { rewriteHeaderBlock } from '../../message/headers.ts';
import { messageFacts } from '../../message/message-facts.ts';
import { parseAddress } from '../../smtp/address.ts';
import { replies, SmtpReply } from '../../smtp/reply.ts';
import { metrics } from '../../admin/metrics.ts';
import { releaseConcurrency } from '../../checks/limit-sections.ts';
import type { Runtime } from '../../smtp/runtime.ts';
import type { FinalEdits, MilterConnectInfo, MilterPipeline, MilterPipelineFactory, Outcome, PipelineReply } from './milter-pipeline.ts';

export interface RuntimePipelineOptions {
  /** `hold`: Postfix's HOLD queue (SMFIR_QUARANTINE); `store`: mailgate's quarantine, then discard. */
  quarantine: 'hold' | 'store';
}

interface Tx {
  qid: string;
  facts: FactSet;
  verdict: Verdict;
  from: string;
  rcpts: string[];
  output: CheckOutput;
}

const CONTINUE: Outcome = { kind: 'continue' };

export function runtimePipelineFactory(rt: Runtime, opts: RuntimePipelineOptions): MilterPipelineFactory {
  return ({ id, log }) => new RuntimePipeline(rt, opts, id, log);
}

class RuntimePipeline implements MilterPipeline {
  readonly #rt: Runtime;
  readonly #opts: RuntimePipelineOptions;
  #log: Logger;
  readonly #context: ConnectionContext;
  readonly #facts = new FactSet();
  readonly #abort = new AbortController();
  #connVerdict: Verdict = emptyVerdict();
  #tx: Tx | undefined;
  #txCount = 0;
  #helo = '';

  constructor(rt: Runtime, opts: RuntimePipelineOptions, id: string, log: Logger) {
    this.#rt = rt;
    this.#opts = opts;
    this.#log = log;
    this.#context = { id, front: 'milter', notes: new Map() };
  }

  async connect(info: MilterConnectInfo): Promise<Outcome> {
    for (const [k, v] of info.facts) this.#facts.set(k, v);
    // Every later line of this connection names the client, as the SMTP front's do.
    this.#log = this.#log.child({ ip: this.#facts.get('client.ip') });
    // The SMTP front's connect facts that have no milter source get their neutral values.
    if (!this.#facts.has('client.local_port')) this.#facts.set('client.local_port', 0);
    const r = await this.#stage('connect', this.#facts, emptyVerdict(), newOutput());
    this.#connVerdict = r.verdict;
    return r.outcome;
  }

  async helo(name: string): Promise<Outcome> {
    this.#helo = name;
    this.#facts.set('helo.name', name);
    // Postfix does not tell a milter EHLO from HELO; nearly every MTA says EHLO.
    this.#facts.set('helo.esmtp', true);
    this.abort();
    const r = await this.#stage('helo', this.#facts, this.#connVerdict, newOutput());
    this.#connVerdict = r.verdict;
    return r.outcome;
  }

  async mail(from: string, args: Record<string, string | true>, extra: ReadonlyMap<string, FactValue>): Promise<Outcome> {
    this.abort();
    let addr = '';
    let domain = '';
    if (from !== '') {
      const p = parseAddress(from);
      if (!p) return refuse(replies.badSenderSyntax('expected user@domain'));
      addr = p.address;
      domain = p.domain;
    }
    this.#txCount++;
    const facts = new FactSet(this.#facts);
    for (const [k, v] of extra) facts.set(k, v);
    if (!facts.has('tls')) facts.set('tls', false);
    facts.set('mail.from', addr);
    facts.set('mail.from_domain', domain);
    facts.set('mail.null_sender', addr === '');
    facts.set('mail.size_declared', typeof args.SIZE === 'string' ? Number(args.SIZE) || 0 : 0);
    facts.set('mail.body', typeof args.BODY === 'string' ? args.BODY.toUpperCase() : '');
    facts.set('mail.smtputf8', args.SMTPUTF8 === true);
    facts.set('mail.transaction', this.#txCount);
    const tx: Tx = { qid: newQueueId(), facts, verdict: this.#connVerdict, from: addr, rcpts: [], output: newOutput() };
    this.#tx = tx;
    const r = await this.#stage('mail', facts, tx.verdict, tx.output);
    tx.verdict = r.verdict;
    if (r.outcome.kind === 'refuse' && this.#tx === tx) this.#tx = undefined;
    return r.outcome;
  }

  async rcpt(to: string, _args: Record<string, string | true>): Promise<Outcome> {
    const tx = this.#tx;
    if (!tx) return refuse(new SmtpReply(503, '5.5.1', 'Error: need MAIL command'));
    // Relay control is Postfix's job in milter mode (smtpd_relay_restrictions): only the syntax
    // is ours to judge. The domainless postmaster (RFC 5321 4.1.1.3) is never refused: it is
    // judged as postmaster@ our first domain, as the SMTP front does.
    const target = to.toLowerCase() === 'postmaster' ? `postmaster@${this.#rt.domains.values().next().value ?? 'localhost'}` : to;
    const p = parseAddress(target);
    if (!p) return refuse(replies.badRecipientSyntax('expected user@domain'));
    const limits = this.#rt.config.limits;
    if (tx.rcpts.length >= limits.max_recipients) return refuse(replies.tooManyRecipients(limits.max_recipients));
    tx.facts.set('rcpt.address', p.address);
    tx.facts.set('rcpt.domain', p.domain);
    const r = await this.#stage('rcpt', tx.facts, tx.verdict, tx.output, p.address);
    // A refused recipient does not carry its score into the message (as in the SMTP front).
    if (r.outcome.kind === 'refuse') return r.outcome;
    tx.verdict = r.verdict;
    tx.rcpts.push(p.address);
    return CONTINUE;
  }

  async data(message: Readable, extra: ReadonlyMap<string, FactValue>): Promise<Outcome> {
    const rt = this.#rt;
    const lim = rt.config.limits;
    const spool = new Spool(
      { maxBytes: lim.max_message_bytes, maxHeaderBytes: lim.max_header_bytes, maxLineBytes: lim.max_line_bytes, memoryBytes: lim.memory_spool_bytes, tmpDir: rt.spoolDir },
      rt.config.smtp.bare_newlines === 'normalize',
    );
    const tx = this.#tx;
    const started = performance.now();
    let action: Action | 'error' = 'tempfail';
    let reason = '';
    let outcome: Outcome = refuse(replies.localError('no verdict'));
    try {
      await pipeline(message, spool);
      if (!tx || this.#tx !== tx) return (outcome = refuse(new SmtpReply(503, '5.5.1', 'Error: need MAIL command')));
      if (spool.problem) {
        const p = spool.problem;
        action = 'reject';
        reason = `limit: ${p}`;
        return (outcome = refuse(
          p === 'too-big' ? replies.messageTooBig(lim.max_message_bytes)
          : p === 'header-too-big' ? replies.headerTooBig(lim.max_header_bytes)
          : p === 'line-too-long' ? new SmtpReply(552, '5.3.4', `Message line longer than ${lim.max_line_bytes} bytes`)
          : replies.bareNewline(),
        ));
      }
      const facts = tx.facts;
      for (const [k, v] of extra) facts.set(k, v);
      facts.delete('rcpt.address');
      facts.delete('rcpt.domain');
      facts.set('rcpt.addresses', tx.rcpts);
      facts.set('rcpt.count', tx.rcpts.length);
      messageFacts(spool, facts);
      facts.set('message.bare_newlines', spool.bareNewlines);
      const r = await this.#stage('data', facts, tx.verdict, tx.output, undefined, spool);
      const v = r.verdict;
      tx.verdict = v;
      reason = v.fired.map((f) => f.rule).join(',');
      if (r.outcome.kind === 'refuse') {
        action = r.outcome.reply.code >= 500 ? 'reject' : 'tempfail';
        if (r.failure) reason = `check ${r.failure} failed`;
        return (outcome = r.outcome);
      }
      const final: Action = v.action === 'continue' ? 'accept' : v.action;
      action = final;
      const edits = this.#finalEdits(tx, v);
      if (final === 'accept') return (outcome = { kind: 'deliver', edits });
      if (final === 'discard') return (outcome = { kind: 'discard' });
      if (final === 'quarantine') {
        if (this.#opts.quarantine === 'hold') return (outcome = { kind: 'quarantine', edits, reason: `mailgate ${tx.qid}: ${reason || 'policy'}` });
        await rt.quarantine.put(
          {
            id: tx.qid,
            received: new Date().toISOString(),
            client: { ip: String(facts.get('client.ip') ?? ''), helo: this.#helo },
            from: tx.from,
            rcpts: tx.rcpts,
            size: spool.size,
            reason: reason || 'policy',
            score: v.score,
            rules: v.fired.map((f) => f.rule),
            facts: facts.toJSON(),
          },
          // The copy carries our results, as the SMTP front's quarantine copies do.
          [rewriteHeaderBlock(spool.headers, spool.headerTerminated, [...edits.addHeaders, ...edits.appendHeaders], edits.removeHeaders), spool.bodyStream()],
        );
        return (outcome = { kind: 'quarantine', edits, reason: reason || 'policy', stored: tx.qid });
      }
      // reject/tempfail at data are refusals (handled above); nothing else remains.
      return (outcome = { kind: 'deliver', edits });
    } catch (err) {
      if (this.#tx !== tx || this.#abort.signal.aborted) {
        reason = 'transaction aborted by the MTA';
        return (outcome = refuse(replies.clientGone()));
      }
      this.#log.error({ err: (err as Error).message, qid: tx?.qid }, 'error while processing message');
      action = 'error';
      return (outcome = refuse(replies.localError('internal error')));
    } finally {
      spool.release();
      const durationS = (performance.now() - started) / 1000;
      metrics.messagesTotal.inc({ action });
      metrics.messageDuration.observe(durationS);
      if (tx) {
        rt.capture?.(tx.facts, tx.verdict, action, tx.qid);
        this.#log.info(
          {
            qid: tx.qid,
            mta_qid: tx.facts.get('milter.queue_id'),
            front: 'milter',
            helo: this.#helo,
            from: tx.from,
            rcpts: tx.rcpts,
            size: spool.size,
            action,
            score: tx.verdict.score,
            rules: tx.verdict.fired.map((f) => `${f.rule}(${f.score})`),
            reason: reason || undefined,
            outcome: outcome.kind === 'refuse' ? `${outcome.reply.code} ${outcome.reply.enhanced} ${outcome.reply.text}` : outcome.kind,
            duration_ms: Math.round(durationS * 10_000) / 10,
          },
          'message',
        );
      }
      if (this.#tx === tx) this.#tx = undefined;
    }
  }

  abort(): void {
    this.#tx = undefined;
  }

  async close(): Promise<void> {
    this.#tx = undefined;
    this.#abort.abort(new Error('milter connection closed'));
    // Frees this connection's slot in the shared concurrency limit now, not at lease expiry.
    releaseConcurrency(this.#facts);
    for (const c of this.#rt.checks) {
      if (!c.disconnect) continue;
      try {
        await c.disconnect(this.#context);
      } catch (err) {
        this.#log.warn({ check: c.name, err: (err as Error).message }, 'check disconnect failed');
      }
    }
  }

  /** Everything to change at end of message: check edits, rule headers and subject tag, config's strip_headers. */
  #finalEdits(tx: Tx, v: Verdict): FinalEdits {
    const e = tx.output.edits;
    const out: FinalEdits = {
      addHeaders: [...e.addHeaders],
      appendHeaders: [...v.addHeaders],
      removeHeaders: [...e.removeHeaders, ...this.#rt.stripHeaders],
      rcptRewrites: new Map(e.rcptRewrites),
    };
    const tag = e.tagSubject ?? v.tagSubject;
    if (tag !== undefined) out.tagSubject = tag;
    if (e.senderRewrite !== undefined) out.senderRewrite = e.senderRewrite;
    return out;
  }

  async #stage(stage: Stage, facts: FactSet, previous: Verdict, output: CheckOutput, recipient?: string, message?: Spool): Promise<{ verdict: Verdict; outcome: Outcome; failure?: string }> {
    const args: Parameters<typeof runStage>[0] = {
      stage,
      connection: this.#context,
      checks: this.#rt.checks,
      policy: this.#rt.policy,
      facts,
      previous,
      output,
      logger: this.#log,
      signal: this.#abort.signal,
    };
    if (recipient !== undefined) args.recipient = recipient;
    if (message !== undefined) args.message = message;
    const res = await runStage(args);
    let reply: SmtpReply | undefined;
    if (res.failure) reply = res.failure.outcome === 'reject' ? replies.rejected(`Message refused: check ${res.failure.check} failed`) : replies.checkFailed(res.failure.check);
    else if (res.verdict.action === 'reject') reply = replyFor(res.verdict, replies.rejected());
    else if (res.verdict.action === 'tempfail') reply = replyFor(res.verdict, replies.tempfailed());
    if (!reply) return { verdict: res.verdict, outcome: CONTINUE };
    metrics.refusals.inc({ stage, class: reply.isTemp ? '4xx' : '5xx' });
    this.#log.info({ stage, front: 'milter', reply: reply.toString(), score: res.verdict.score, rules: res.verdict.fired.map((f) => `${f.rule}(${f.score})`) }, 'refused');
    const r = { verdict: res.verdict, outcome: refuse(reply) };
    return res.failure ? { ...r, failure: res.failure.check } : r;
  }
}

function newOutput(): CheckOutput {
  return { facts: new FactSet(), edits: emptyEdits() };
}

function refuse(r: SmtpReply): Outcome {
  const reply: PipelineReply = { code: r.code, enhanced: r.enhanced, text: r.text };
  return { kind: 'refuse', reply };
}

/** The rule's reply over the default, exactly as src/smtp/session.ts builds it. */
function replyFor(v: Verdict, dflt: SmtpReply): SmtpReply {
  const r = v.reply;
  if (!r) return dflt;
  const code = r.code ?? dflt.code;
  const enhanced = r.enhanced ?? `${String(code)[0]}${dflt.enhanced.slice(1)}`;
  return new SmtpReply(code, enhanced, r.text ?? dflt.text);
}

// Queue ids as the SMTP front makes them (time-ordered, unique per process), prefixed M for milter.
const QID_PROCESS = randomBytes(3).toString('hex').toUpperCase();
let qidCounter = 0;
function newQueueId(): string {
  qidCounter = (qidCounter + 1) % 1_679_616;
  return `M${Date.now().toString(36).toUpperCase()}${QID_PROCESS}${qidCounter.toString(36).toUpperCase().padStart(4, '0')}`;
}
