// The delivery contract the transaction core drives: where accepted mail goes (the backend MTA,
// a Maildir, nothing when a milter's MTA delivers itself) and where held mail goes (quarantine).
// Implementations live in src/delivery/; the core only knows these interfaces (Haraka's queue hook).
import type { Readable } from 'node:stream';

/** A reply of the next hop: basic code, enhanced status ("" when it gave none) and text lines. */
export interface BackendReply {
  code: number;
  enhanced: string;
  lines: string[];
}

/** What the backend learns about the real client (XCLIENT, PROXY towards the backend). */
export interface ClientIdentity {
  ip: string;
  port: number;
  helo: string;
  esmtp: boolean;
  /** Verified reverse DNS name, when known (XCLIENT NAME). */
  rdns?: string;
}

/** One client connection's link to the next hop: at most one transaction at a time. */
export interface DeliveryLink {
  mail(from: string, params: Record<string, string | true>): Promise<BackendReply>;
  rcpt(to: string): Promise<BackendReply>;
  /** Streams the message (CRLF, not dot-stuffed); resolves with the next hop's final reply. */
  data(parts: ReadonlyArray<Buffer | Readable>): Promise<BackendReply>;
  /** Ends an open transaction without delivering (RSET). Never throws. */
  abort(): Promise<void>;
  /** The client connection ended: return the session to a pool or close it. */
  release(): void;
}

export interface Backend {
  link(client: ClientIdentity): DeliveryLink;
  /** For /readyz: can we reach the next hop now? */
  probe(): Promise<{ ok: boolean; detail: string }>;
  close(): void;
  readonly description: string;
}

/** Thrown by a DeliveryLink when the next hop cannot be reached or stops answering. */
export class BackendError extends Error {
  readonly kind: 'connect' | 'timeout' | 'closed' | 'protocol';
  constructor(kind: BackendError['kind'], message: string) {
    super(message);
    this.kind = kind;
  }
}

/** What the core records with a quarantined message (the store may add its own fields). */
export interface QuarantineRecord {
  id: string;
  received: string;
  client: { ip: string; helo: string; port?: number; rdns?: string };
  /** TLS of the client connection, if any. */
  tls?: { protocol?: string; cipher?: string };
  from: string;
  rcpts: string[];
  size: number;
  reason: string;
  score: number;
  rules: string[];
  /** Decoded Subject. */
  subject?: string;
  facts?: Record<string, unknown>;
}

/**
 * Where held mail goes. `put` resolves only once the entry is durable (fsync'd). A sink that
 * cannot take the message (quota reached) throws an SmtpError with the reply to give (452 4.3.1
 * by default, `replies.quarantineFull`); any other failure is a 451 — never a 250.
 */
export interface QuarantineSink {
  put(meta: QuarantineRecord, message: ReadonlyArray<Buffer | Readable>): Promise<void>;
}
