// The milter front's adapter over the transaction core: each milter stage is a ConnectionCore call
// (the same envelope normalisation, checks, rules, reply mapper and finalize step as the SMTP
// front), and the core's end-of-message result becomes an Outcome the reply map turns into milter
// modification actions. Postfix delivers, so the core's next hop is a pass-through; relay control
// and the trace header are Postfix's own.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { FactValue } from '../../pipeline/facts.ts';
import { ConnectionCore, type DataResult } from '../../pipeline/transaction.ts';
import type { Runtime } from '../../pipeline/runtime.ts';
import type { SmtpReply } from '../../pipeline/reply.ts';
import { Spool, spoolFrom } from '../../message/spool.ts';
import { passThroughBackend } from '../../delivery/pass-through.ts';
import type { FinalEdits, MilterConnectInfo, MilterPipeline, MilterPipelineFactory, Outcome } from './milter-pipeline.ts';

export interface CorePipelineOptions {
  /** `hold`: Postfix's HOLD queue (SMFIR_QUARANTINE); `store`: mailgate's quarantine, then discard. */
  quarantine: 'hold' | 'store';
}

const CONTINUE: Outcome = { kind: 'continue' };
const postfixDelivers = passThroughBackend('the milter host MTA (it delivers itself)');

export function corePipelineFactory(rt: Runtime, opts: CorePipelineOptions): MilterPipelineFactory {
  return ({ id, log }) => new CorePipeline(rt, opts, id, log);
}

function stageOutcome(r: SmtpReply | undefined): Outcome {
  return r && !r.isOk ? { kind: 'refuse', reply: { code: r.code, enhanced: r.enhanced, text: r.text } } : CONTINUE;
}

class CorePipeline implements MilterPipeline {
  readonly #rt: Runtime;
  readonly #opts: CorePipelineOptions;
  readonly #id: string;
  readonly #log: Logger;
  #core: ConnectionCore | undefined;
  /** Bumped by abort(): a data() still running for an aborted transaction must not answer for the next. */
  #generation = 0;

  constructor(rt: Runtime, opts: CorePipelineOptions, id: string, log: Logger) {
    this.#rt = rt;
    this.#opts = opts;
    this.#id = id;
    this.#log = log;
  }

  #c(): ConnectionCore {
    if (!this.#core) throw new Error('milter stage before connect');
    return this.#core;
  }

  async connect(info: MilterConnectInfo): Promise<Outcome> {
    const f = info.facts;
    const ip = typeof f.get('client.ip') === 'string' ? (f.get('client.ip') as string) : '';
    const port = typeof f.get('client.port') === 'number' ? (f.get('client.port') as number) : 0;
    const rdns = f.get('milter.client_name');
    const core = new ConnectionCore(
      this.#rt,
      {
        id: info.id || this.#id,
        ip,
        port,
        localPort: typeof f.get('client.local_port') === 'number' ? (f.get('client.local_port') as number) : 0,
        proxied: false,
        ...(typeof rdns === 'string' && rdns && rdns !== 'unknown' ? { rdns } : {}),
      },
      {
        front: 'milter',
        backend: postfixDelivers,
        quarantine: this.#opts.quarantine === 'hold' ? null : (this.#rt.quarantine ?? null),
        relayControl: false,
        trace: false,
        messageLimit: false,
      },
    );
    // The connect macros' facts (milter.*, client.*) join the core's connection facts.
    for (const [k, v] of f) core.facts.set(k, v);
    this.#core = core;
    return stageOutcome(await core.connect());
  }

  async helo(name: string): Promise<Outcome> {
    // Postfix does not tell a milter EHLO from HELO; nearly every MTA says EHLO.
    return stageOutcome(await this.#c().heloStage(name, true));
  }

  async mail(from: string, args: Record<string, string | true>, facts: ReadonlyMap<string, FactValue>): Promise<Outcome> {
    const core = this.#c();
    // TLS of Postfix's session with its client, from the macros, as the SMTP front records its own.
    if (facts.get('tls') === true) {
      const v = facts.get('tls.version');
      const c = facts.get('tls.cipher');
      core.tls = { ...(typeof v === 'string' ? { version: v } : {}), ...(typeof c === 'string' ? { cipher: c } : {}) };
    } else core.tls = undefined;
    // Postfix already judged the MAIL parameters; ours would refuse DSN's ENVID/RET it offers.
    const known: Record<string, string | true> = {};
    for (const [k, v] of Object.entries(args)) if (['SIZE', 'BODY', 'SMTPUTF8'].includes(k.toUpperCase())) known[k.toUpperCase()] = v;
    return stageOutcome(await core.mail(from, known, facts));
  }

  async rcpt(to: string, _args: Record<string, string | true>): Promise<Outcome> {
    // NOTIFY/ORCPT are Postfix's business: the core judges the address only.
    return stageOutcome(await this.#c().rcpt(to, {}));
  }

  async data(message: Readable, facts: ReadonlyMap<string, FactValue>): Promise<Outcome> {
    const core = this.#c();
    const gen = this.#generation;
    const lim = this.#rt.config.limits;
    const spool = new Spool(
      {
        maxBytes: lim.max_message_bytes,
        maxHeaderBytes: lim.max_header_bytes,
        maxLineBytes: lim.max_line_bytes,
        memoryBytes: lim.memory_spool_bytes,
        tmpDir: this.#rt.spoolDir,
      },
      this.#rt.config.smtp.bare_newlines === 'normalize',
      { nulBytes: this.#rt.config.smtp.nul_bytes },
    );
    try {
      try {
        await spoolFrom(message, spool);
      } catch {
        // The MTA aborted (RSET, client gone): the stream was destroyed.
        const r = await core.data(spool, 'client-gone', facts);
        return stageOutcome(r.reply);
      }
      const r = await core.data(spool, spool.problem, facts);
      if (gen !== this.#generation) return stageOutcome(r.reply.isOk ? undefined : r.reply);
      return toOutcome(r, this.#opts);
    } finally {
      spool.release();
    }
  }

  abort(): void {
    this.#generation++;
    void this.#core?.reset();
  }

  async close(): Promise<void> {
    await this.#core?.disconnect();
    this.#log.debug({ cid: this.#id }, 'milter connection closed');
  }
}

/** The core's end of message as the milter reply map wants it. */
function toOutcome(r: DataResult, opts: CorePipelineOptions): Outcome {
  if (!r.reply.isOk) return stageOutcome(r.reply);
  if (r.action === 'discard') return { kind: 'discard' };
  const e = r.edits;
  const edits: FinalEdits = {
    // Everything the finalize step put on top (our results, rules' headers, signer fields), in order.
    addHeaders: [...(r.final?.added ?? [])],
    appendHeaders: [],
    removeHeaders: [...(e?.removeHeaders ?? [])],
    rcptRewrites: new Map(e?.rcptRewrites ?? []),
  };
  if (e?.tagSubject !== undefined) edits.tagSubject = e.tagSubject;
  if (e?.senderRewrite !== undefined) edits.senderRewrite = e.senderRewrite;
  if (r.action === 'quarantine') {
    const reason = r.verdict?.fired.map((f) => f.rule).join(',') || 'policy';
    if (opts.quarantine === 'store') return { kind: 'quarantine', edits, reason, stored: r.qid ?? '' };
    return { kind: 'quarantine', edits, reason: `mailgate ${r.qid ?? ''}: ${reason}` };
  }
  return { kind: 'deliver', edits };
}
