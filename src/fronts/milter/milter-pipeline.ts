// What the milter session needs from the message pipeline, as a small interface: one call per
// SMTP stage Postfix reports, each answering with an Outcome. core-pipeline.ts implements it over
// the transaction core, the same core the SMTP front drives.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Edits } from '../../pipeline/check.ts';
import type { FactValue } from '../../pipeline/facts.ts';

/** An SMTP reply as Postfix will send it to its client: same code, enhanced code and text as the SMTP front. */
export interface PipelineReply {
  code: number;
  enhanced: string;
  text: string;
}

/** Edits to apply at end of message, already merged from checks, rules and config. */
export interface FinalEdits extends Omit<Edits, 'signers'> {
  /** Fields to add under ours (rules' add_header); `addHeaders` go on top (trace position). */
  appendHeaders: Array<{ name: string; value: string }>;
}

export type Outcome =
  | { kind: 'continue' }
  | { kind: 'refuse'; reply: PipelineReply }
  | { kind: 'deliver'; edits: FinalEdits }
  /** `stored`: a copy is in mailgate's own quarantine (quarantine: store), so the MTA discards. */
  | { kind: 'quarantine'; edits: FinalEdits; reason: string; stored?: string }
  | { kind: 'discard' };

/** Connection as the milter learns it (CONNECT packet plus connect macros). */
export interface MilterConnectInfo {
  id: string;
  /** Connection facts (client.ip, client.port, … see macros.ts). */
  facts: ReadonlyMap<string, FactValue>;
}

export interface MilterPipeline {
  connect(info: MilterConnectInfo): Promise<Outcome>;
  helo(name: string): Promise<Outcome>;
  /** `facts`: transaction facts from the MAIL macros (tls.*, milter.queue_id …). */
  mail(from: string, args: Record<string, string | true>, facts: ReadonlyMap<string, FactValue>): Promise<Outcome>;
  rcpt(to: string, args: Record<string, string | true>): Promise<Outcome>;
  /**
   * The message as it arrives (header fields, empty line, body, CRLF line endings), ended at end
   * of message. The pipeline always drains it (it may be destroyed on abort). `facts`: from the
   * macros known when the message starts (milter.queue_id: Postfix assigns it after MAIL).
   */
  data(message: Readable, facts: ReadonlyMap<string, FactValue>): Promise<Outcome>;
  /** The MTA aborted the transaction (RSET, client gone, another milter rejected): forget it. */
  abort(): void;
  /** The connection is over: release connection state (concurrency slots, notes). */
  close(): Promise<void>;
}

export type MilterPipelineFactory = (ctx: { id: string; log: Logger }) => MilterPipeline;
