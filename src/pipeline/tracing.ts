// The transaction core's tracing hooks: the message span (MAIL to the end-of-DATA reply, with the
// decision record), stage spans, and spans around finalize, the backend relay and the quarantine
// write. Kept out of transaction.ts so the core only calls these. With tracing off every span is
// the shared NOOP_SPAN and the `recording` guards skip building attributes: nothing is allocated.
import { NOOP_SPAN, type Span } from '../trace/span.ts';
import type { Runtime } from './runtime.ts';
import type { StageResult } from './runner.ts';
import type { SmtpReply } from './reply.ts';
import type { Stage } from './stages.ts';
import type { Verdict } from './verdict.ts';

/** Who the span is about: the ConnectionCore itself (structurally: no import cycle, no object per call). */
export interface SpanSubject {
  readonly info: { readonly id: string; readonly ip: string; readonly port: number };
  readonly context: { readonly front: string };
}

/** The root span of one message transaction, started at MAIL. */
export function messageSpan(rt: Runtime, who: SpanSubject): Span {
  const span = rt.tracer?.startSpan('message') ?? NOOP_SPAN;
  if (span.recording) subject(span, who);
  return span;
}

/** A stage's span: a child of the message span (mail, rcpt, data), or a root of its own before MAIL (connect, helo). */
export function stageSpan(rt: Runtime, stage: Stage, parent: Span | undefined, who: SpanSubject): Span {
  const span = parent ? parent.child(stage) : (rt.tracer?.startSpan(stage) ?? NOOP_SPAN);
  if (span.recording) {
    span.set('mailgate.stage', stage);
    if (!parent) subject(span, who);
  }
  return span;
}

export function endStage(span: Span, res: StageResult, refuse: SmtpReply | undefined, recipient: string | undefined): void {
  if (!span.recording) return;
  span.set('mailgate.rcpt', recipient).set('mailgate.score', res.verdict.score).set('mailgate.stage_action', res.verdict.action);
  if (res.failure) span.fail(`check ${res.failure.check} failed: ${res.failure.error}`).set('mailgate.failed_check', res.failure.check);
  if (refuse) span.set('mailgate.reply_code', refuse.code).set('mailgate.reply', refuse.toString());
  span.end();
}

/** What the message span records at its end: the same record as the per-message log line. */
export interface DecisionRecord {
  qid: string;
  helo: string;
  from: string;
  rcpts: readonly string[];
  size: number;
  action: string;
  verdict: Verdict;
  reply: SmtpReply;
  reason: string;
}

export function endMessage(span: Span, d: DecisionRecord): void {
  if (!span.recording) return;
  span
    .set('mailgate.qid', d.qid)
    .set('mailgate.helo', d.helo)
    .set('mailgate.from', d.from)
    .set('mailgate.rcpt_count', d.rcpts.length)
    .set('mailgate.size', d.size)
    .set('mailgate.action', d.action)
    .set('mailgate.score', d.verdict.score)
    .set(
      'mailgate.rules',
      d.verdict.fired.map((f) => f.rule),
    )
    .set('mailgate.reply_code', d.reply.code)
    .set('mailgate.reply', d.reply.toString())
    .set('mailgate.reason', d.reason || undefined);
  if (d.action === 'error') span.fail(d.reason || 'internal error');
  span.end();
}

/** A transaction that ended before DATA (MAIL refused, RSET, client gone): its span ends here. */
export function endUnfinished(span: Span, qid: string, why: string): void {
  if (!span.recording) return;
  span.set('mailgate.qid', qid).set('mailgate.action', 'none').set('mailgate.reason', why).end();
}

/** Runs `fn` inside a child span of `parent` named `name`; a throw marks it failed. Off: just `fn()`. */
export function traced<T>(parent: Span, name: string, fn: () => Promise<T>, after?: (span: Span, result: T) => void): Promise<T> {
  return parent.recording ? inSpan(parent.child(name), fn, after) : fn();
}

async function inSpan<T>(span: Span, fn: () => Promise<T>, after?: (span: Span, result: T) => void): Promise<T> {
  try {
    const r = await fn();
    if (after && span.recording) after(span, r);
    return r;
  } catch (err) {
    span.fail((err as Error).message);
    throw err;
  } finally {
    span.end();
  }
}

/** The backend span's attributes: the backend's own reply to the end of DATA. */
export function backendReplyAttrs(span: Span, r: { code: number; enhanced: string; lines: string[] }): void {
  span.set('mailgate.reply_code', r.code).set('mailgate.reply', `${r.code} ${r.enhanced} ${r.lines.join(' ')}`.trim());
  if (r.code >= 400) span.fail(`backend refused: ${r.code}`);
}

function subject(span: Span, who: SpanSubject): void {
  span.set('mailgate.cid', who.info.id).set('client.address', who.info.ip).set('client.port', who.info.port).set('mailgate.front', who.context.front);
}
