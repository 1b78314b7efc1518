// The one catalogue of SMTP replies mailgate writes itself. Every reply a client sees that is not
// the backend's own answer is made here, so wording and enhanced codes stay consistent; the milter
// front sends the same code, enhanced code and text. docs/replies.md is generated from this file.
import type { Stage } from './stages.ts';

/** A complete SMTP reply: basic code (RFC 5321), enhanced status (RFC 3463) and text. */
export class SmtpReply {
  readonly code: number;
  readonly enhanced: string;
  readonly text: string;
  constructor(code: number, enhanced: string, text: string) {
    this.code = code;
    this.enhanced = enhanced;
    this.text = text;
  }
  get isTemp(): boolean {
    return this.code >= 400 && this.code < 500;
  }
  get isPerm(): boolean {
    return this.code >= 500;
  }
  get isOk(): boolean {
    return this.code >= 200 && this.code < 400;
  }
  toString(): string {
    return `${this.code} ${this.enhanced} ${this.text}`;
  }
}

/** An error carrying an SMTP reply: thrown into smtp-server callbacks, which send it as is. */
export class SmtpError extends Error {
  readonly reply: SmtpReply;
  constructor(reply: SmtpReply) {
    super(reply.toString());
    this.reply = reply;
  }
}

export const replies = {
  relayDenied: (domain: string) => new SmtpReply(550, '5.7.1', `Relaying denied: we do not accept mail for ${domain}`),
  badRecipientSyntax: (why: string) => new SmtpReply(501, '5.1.3', `Bad recipient address syntax: ${why}`),
  badSenderSyntax: (why: string) => new SmtpReply(501, '5.1.7', `Bad sender address syntax: ${why}`),
  tooManyRecipients: (max: number) => new SmtpReply(452, '4.5.3', `Too many recipients (at most ${max} per message)`),
  messageTooBig: (max: number) => new SmtpReply(552, '5.3.4', `Message size exceeds fixed limit of ${max} bytes`),
  headerTooBig: (max: number) => new SmtpReply(552, '5.3.4', `Message header exceeds ${max} bytes`),
  messageLineTooLong: (max: number) => new SmtpReply(552, '5.3.4', `Message line longer than ${max} bytes`),
  bareNewline: () => new SmtpReply(550, '5.5.2', 'Message contains bare CR or LF line endings, which RFC 5321 forbids'),
  tooManyConnections: () => new SmtpReply(421, '4.7.0', 'Too many connections, try again later'),
  tooManyConnectionsFromIp: (ip: string) => new SmtpReply(421, '4.7.0', `Too many connections from ${ip}, try again later`),
  backendUnavailable: (why: string) => new SmtpReply(451, '4.4.1', `Backend mail server unavailable, try again later (${why})`),
  backendTimeout: () => new SmtpReply(451, '4.4.2', 'Backend mail server timed out, try again later'),
  shuttingDown: () => new SmtpReply(421, '4.3.2', 'Service shutting down, try again later'),
  tooManyErrors: (n: number) => new SmtpReply(421, '4.7.0', `Too many errors on one connection (${n}), closing`),
  tooManyJunkCommands: (max: number) => new SmtpReply(421, '4.7.0', `Too many NOOP/RSET/HELP/VRFY commands (at most ${max} per connection), closing`),
  sessionTooLong: (maxS: number) => new SmtpReply(421, '4.4.2', `Connection open too long (at most ${maxS} s), closing: reconnect to go on`),
  nulBytes: () => new SmtpReply(550, '5.6.0', 'Message contains NUL bytes, which RFC 5321 forbids'),
  relayRouting: (why: string) => new SmtpReply(550, '5.7.1', `Relaying denied: ${why}`),
  tooSlow: () => new SmtpReply(421, '4.4.2', 'Too slow: command or data not completed in time, closing connection'),
  nonAsciiAddress: () => new SmtpReply(553, '5.6.7', 'Non-ASCII address requires SMTPUTF8, or it is not valid UTF-8'),
  unknownParameter: (names: string) => new SmtpReply(555, '5.5.4', `Unsupported parameter ${names}`),
  clientGone: () => new SmtpReply(451, '4.4.2', 'Connection lost during DATA'),
  localError: (why: string) => new SmtpReply(451, '4.3.0', `Local error in processing, try again later (${why})`),
  checkFailed: (check: string) => new SmtpReply(451, '4.7.1', `Temporary failure in message checks (${check}), try again later`),
  checkFailedReject: (check: string) => new SmtpReply(550, '5.7.1', `Message refused: check ${check} failed`),
  /** A policy refusal (a rule or a score threshold) at `stage`, with the stage's default text. */
  policyRejected: (stage: Stage) => POLICY[stage].reject,
  policyTempfailed: (stage: Stage) => POLICY[stage].tempfail,
  quarantined: (id: string) => new SmtpReply(250, '2.0.0', `Message accepted (${id})`),
  discarded: (id: string) => new SmtpReply(250, '2.0.0', `Message accepted (${id})`),
  quarantineFull: () => new SmtpReply(452, '4.3.1', 'Insufficient system storage: quarantine full, try again later'),
  quarantineFullReject: () => new SmtpReply(552, '5.3.4', 'Message cannot be held: quarantine full'),
  needMail: () => new SmtpReply(503, '5.5.1', 'Error: need MAIL command'),
  tooManyMessages: (max: number) => new SmtpReply(421, '4.7.0', `Too many messages on one connection (at most ${max}), reconnect`),
  /** The accepting reply when nothing downstream answers (milter front, rules test). */
  accepted: (id: string) => new SmtpReply(250, '2.0.0', `Ok: queued as ${id}`),
  ok: () => new SmtpReply(250, '2.1.0', 'Ok'),
} as const;

// At connect RFC 5321 3.1 has the server answer 554 instead of the greeting; a temporary refusal
// there is 421 (the server closes the connection).
const POLICY: Record<Stage, { reject: SmtpReply; tempfail: SmtpReply }> = {
  connect: {
    reject: new SmtpReply(554, '5.7.1', 'Service unavailable: connection refused by policy'),
    tempfail: new SmtpReply(421, '4.7.0', 'Service temporarily unavailable, try again later'),
  },
  helo: {
    reject: new SmtpReply(550, '5.7.1', 'HELO/EHLO rejected by policy'),
    tempfail: new SmtpReply(451, '4.7.1', 'HELO/EHLO temporarily refused, try again later'),
  },
  mail: {
    reject: new SmtpReply(550, '5.7.1', 'Sender rejected by policy'),
    tempfail: new SmtpReply(451, '4.7.1', 'Sender temporarily refused by policy, try again later'),
  },
  rcpt: {
    reject: new SmtpReply(550, '5.7.1', 'Recipient rejected by policy'),
    tempfail: new SmtpReply(451, '4.7.1', 'Recipient temporarily refused by policy, try again later'),
  },
  data: {
    reject: new SmtpReply(550, '5.7.1', 'Message rejected by policy'),
    tempfail: new SmtpReply(451, '4.7.1', 'Message temporarily deferred by policy, try again later'),
  },
};
