// The contract between the pipeline and a check. A check reads the session/transaction and the
// facts gathered so far and adds facts; it never writes an SMTP reply and never touches a socket.
import type { FactSet, FactSpec } from './facts.ts';
import type { Stage } from './stages.ts';

/** What to do when a check throws or times out. `tempfail` (the default) makes the client retry. */
export type FailureOutcome = 'tempfail' | 'continue' | 'reject';

/**
 * Connection-scoped state, alive from connect to disconnect (Haraka's `connection.notes`). A check
 * keeps what it must remember between stages or release at disconnect under its own name in
 * `notes`, never in module globals.
 */
export interface ConnectionContext {
  /** Connection id (also in every log line of the connection). */
  readonly id: string;
  /** Which front the connection came through, for metrics labels. */
  readonly front: 'smtp' | 'milter' | 'offline';
  readonly notes: Map<string, unknown>;
}

/** What a check may read about the SMTP conversation at the moment it runs. */
export interface CheckInput {
  stage: Stage;
  /** The connection this stage belongs to (state a check keeps until disconnect). */
  connection: ConnectionContext;
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
  /**
   * The whole message as the buffers it is held in, while it is in memory (read them, never
   * change them); undefined when it is in a temp file, or from a view that does not hold its
   * bytes. A check that reads every byte uses these when it can: no stream per message.
   */
  memoryChunks?(): readonly Buffer[] | undefined;
}

/**
 * Changes to the message and its envelope, collected from checks and rules during a transaction
 * and applied once, after the verdict, by the finalize step (src/pipeline/finalize.ts) — before
 * any signer runs, so a signature covers what is delivered.
 */
export interface Edits {
  /** Header fields added above the existing ones, in order (trace-field position). */
  addHeaders: Array<{ name: string; value: string }>;
  /** Header fields removed from the delivered message: predicates over (name, value). */
  removeHeaders: Array<(name: string, value: string) => boolean>;
  /** Prefix for the Subject; the first one set wins. */
  tagSubject?: string;
  /** Envelope recipient rewrites: the address as accepted → the address the backend sees. */
  rcptRewrites: Map<string, string>;
  /** Envelope sender rewrite (e.g. BATV signing on the outbound listener). */
  senderRewrite?: string;
  /** Signers that run last, over the final header block, in `order` (ARC seal, then DKIM). */
  signers: Signer[];
}

/**
 * A finalize step that signs or seals the message as delivered: it sees the header block after
 * every edit (so a tagged Subject is covered) and returns fields to put on top of it.
 */
export interface Signer {
  readonly name: string;
  /** Lower runs first: ARC sealing (10) comes before DKIM signing (20). */
  readonly order: number;
  sign(finalHeader: Buffer): Promise<Array<{ name: string; value: string }>>;
}

export function emptyEdits(): Edits {
  return { addHeaders: [], removeHeaders: [], rcptRewrites: new Map(), signers: [] };
}

export interface CheckOutput {
  facts: FactSet;
  edits: Edits;
}

export interface Check {
  /** Short kebab-case name used in metrics labels, logs and `check.<name>.error` facts. */
  readonly name: string;
  readonly stages: readonly Stage[];
  /** Facts this check can set, for rule validation and phase inference. */
  readonly facts: readonly FactSpec[];
  /**
   * Facts this check reads (exact names, or `prefix.*`). The runner runs a check after every
   * check of the same stage that produces one of them, and concurrently with the rest; a need
   * no check of this or an earlier stage can produce is a load-time error.
   */
  readonly needs?: readonly string[];
  /**
   * What running the check does besides computing facts, so `rules test` knows what it may run:
   * `none` (pure: always), `network` (DNS lookups: with a config, unless --offline), `state`
   * (counts or records: never offline). Default `state`.
   */
  readonly effects?: 'none' | 'network' | 'state';
  /** Per-run timeout; the runner aborts the signal and applies `onFailure` when it elapses. */
  readonly timeoutMs?: number;
  readonly onFailure?: FailureOutcome;
  /** Adds facts to `out.facts` (and optionally header edits). Throwing = check failure. */
  run(input: CheckInput, out: CheckOutput): Promise<void> | void;
  /** Optional readiness probe shown in /readyz (e.g. Redis reachable). */
  readonly readiness?: { name: string; check(): Promise<{ ok: boolean; detail: string }> };
  /** Called once when the connection ends, whatever the outcome (release what `notes` holds). */
  disconnect?(connection: ConnectionContext): Promise<void> | void;
  /** Optional cleanup on shutdown (close connections, timers). */
  close?(): Promise<void> | void;
}

/** A connection context for driving checks outside a front (rules test, tests, benches). */
export function detachedConnection(id = 'offline'): ConnectionContext {
  return { id, front: 'offline', notes: new Map() };
}
