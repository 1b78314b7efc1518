// The contract between the pipeline and a check. A check reads the session/transaction and the
// facts gathered so far and adds facts; it never writes an SMTP reply and never touches a socket.
import type { FactSet, FactSpec } from './facts.ts';
import type { Stage } from './stages.ts';

/** What to do when a check throws or times out. `tempfail` (the default) makes the client retry. */
export type FailureOutcome = 'tempfail' | 'continue' | 'reject';

/** What a check may read about the SMTP conversation at the moment it runs. */
export interface CheckInput {
  stage: Stage;
  /** Facts known so far (connection facts plus, within a transaction, transaction facts). */
  facts: FactSet;
  /** At `rcpt`: the recipient being checked (already normalised, lower-cased domain). */
  recipient?: string;
  /** At `data`: the spooled message (headers parsed, body readable as a stream). */
  message?: MessageView;
  /** Aborted when the check's timeout elapses or the client goes away. */
  signal: AbortSignal;
}

/** Read-only view of a spooled message given to `data` checks. */
export interface MessageView {
  /** Size in bytes as received (after line-ending normalisation). */
  readonly size: number;
  /** Raw header block, CRLF line endings, ending with the empty line. */
  readonly headerBytes: Buffer;
  /** Parsed header fields in order: name as written, value unfolded but not decoded. */
  readonly headers: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  /** A fresh stream of the whole message (headers and body) each call. */
  stream(): NodeJS.ReadableStream;
  /** A fresh stream of the body only. */
  bodyStream(): NodeJS.ReadableStream;
}

/** Headers a check wants added to (or removed from) the relayed message. */
export interface HeaderEdits {
  /** Prepended in order, above the existing headers (like trace fields). */
  prepend: Array<{ name: string; value: string }>;
  /** Case-insensitive header names to strip, or a predicate over (name, value). */
  remove: Array<(name: string, value: string) => boolean>;
}

export interface CheckOutput {
  facts: FactSet;
  headers: HeaderEdits;
}

export interface Check {
  /** Short kebab-case name used in metrics labels, logs and `check.<name>.error` facts. */
  readonly name: string;
  readonly stages: readonly Stage[];
  /** Facts this check can set, for rule validation and phase inference. */
  readonly facts: readonly FactSpec[];
  /** Per-run timeout; the runner aborts the signal and applies `onFailure` when it elapses. */
  readonly timeoutMs?: number;
  readonly onFailure?: FailureOutcome;
  /** Adds facts to `out.facts` (and optionally header edits). Throwing = check failure. */
  run(input: CheckInput, out: CheckOutput): Promise<void> | void;
  /** Optional readiness probe shown in /readyz (e.g. Redis reachable). */
  readonly readiness?: { name: string; check(): Promise<{ ok: boolean; detail: string }> };
  /** Optional cleanup on shutdown (close connections, timers). */
  close?(): Promise<void> | void;
}
