// The parts of smtp-server's (untyped) SMTPConnection the SMTP front touches, in one place: the
// patches and the watchdog reach into these internals (pinned version: smtp-server-patches.ts).
import type { Readable } from 'node:stream';
import type { SMTPServer, SMTPServerSession } from 'smtp-server';

/** The parts of smtp-server's (untyped) SMTPConnection we touch. */
export interface Conn {
  id: string;
  session: SMTPServerSession;
  send(code: number, data: string | string[], context?: string | false): void;
  close(): void;
  init(): void;
  _setListeners(cb: () => void): void;
  connectionReady(): void;
  on(ev: string, fn: (...a: unknown[]) => void): void;
  handler_EHLO(command: Buffer, cb: () => void): void;
  handler_HELO(command: Buffer, cb: () => void): void;
  handler_MAIL(command: Buffer, cb: () => void): void;
  handler_RCPT(command: Buffer, cb: () => void): void;
  handler_DATA(command: Buffer, cb: () => void): void;
  handler_RSET(command: Buffer, cb: () => void): void;
  handler_NOOP(command: Buffer, cb: () => void): void;
  handler_HELP(command: Buffer, cb: () => void): void;
  handler_VRFY(command: Buffer, cb: () => void): void;
  _onCommand(command: Buffer, cb?: () => void): void;
  /** The command parser; `_remainder` is the partial line received so far. */
  _parser: { _remainder: string; _dataMode: boolean } | false;
  _dataStream: (Readable & { byteLength?: number }) | false | null;
  _server: SMTPServer & { connections: Set<unknown> };
}
