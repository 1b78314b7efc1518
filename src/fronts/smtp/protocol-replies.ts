// The replies the SMTP engine writes for the protocol itself (greeting, syntax, sequence, limits),
// in one place like the core's catalogue (src/pipeline/reply.ts, which has the policy, limit and
// backend replies). Texts follow smtp-server's, which clients and tests already knew; enhanced
// codes per RFC 3463, none on the greeting, HELO/EHLO replies and 354 (RFC 2034 3).
import { SmtpReply } from '../../pipeline/reply.ts';

const r = (code: number, enhanced: string, text: string) => new SmtpReply(code, enhanced, text);

export const protocolReplies = {
  greeting: (hostname: string, banner: string) => r(220, '', `${hostname} ESMTP${banner ? ` ${banner}` : ''}`),
  hello: (hostname: string, clientIp: string) => r(250, '', `${hostname} Nice to meet you, [${clientIp}]`),
  ehloSyntax: r(501, '', 'Error: syntax: EHLO hostname'),
  heloSyntax: r(501, '', 'Error: Syntax: HELO hostname'),
  badHostname: r(501, '', 'Error: Bad hostname syntax'),
  talkTooSoon: (hostname: string) => r(421, '4.7.0', `${hostname} You talk too soon`),
  lineTooLong: r(421, '4.7.0', 'Error: Command line too long'),
  http: r(421, '4.7.0', 'HTTP requests not allowed'),
  tooManyBadCommands: r(421, '4.7.0', 'Error: too many unrecognized commands'),
  idleTimeout: r(421, '4.4.2', 'Timeout - closing connection'),
  unknownCommand: r(500, '5.5.2', 'Error: command not recognized'),
  notImplemented: r(502, '5.5.1', 'Error: command not implemented'),
  notAllowed: r(550, '5.7.0', 'Error: Not allowed'),
  needHelo: r(503, '5.5.1', 'Error: send HELO/EHLO first'),
  needMail: r(503, '5.5.1', 'Error: need MAIL command'),
  needRcpt: r(503, '5.5.1', 'Error: need RCPT command'),
  nestedMail: r(503, '5.5.1', 'Error: nested MAIL command'),
  badSender: r(501, '5.1.7', 'Error: Bad sender address syntax'),
  badRecipient: r(501, '5.1.3', 'Error: Bad recipient address syntax'),
  /** Duplicate parameter, value parameter without a value (the text says which). */
  badParameter: (why: string) => r(501, '5.5.4', why),
  badSize: r(501, '5.5.4', 'Error: Bad message size syntax'),
  sizeOverLimit: (max: number) => r(552, '5.3.4', `Error: message exceeds fixed maximum message size ${max}`),
  badBody: r(501, '5.5.4', 'Invalid BODY parameter value. Must be 7BIT or 8BITMIME'),
  badSmtputf8: r(501, '5.5.4', 'Invalid SMTPUTF8 parameter. This flag does not accept a value'),
  requireTlsPlain: r(530, '5.7.0', 'REQUIRETLS not permitted on non-TLS connections'),
  badRequireTls: r(501, '5.5.4', 'Invalid REQUIRETLS parameter. This flag does not accept a value'),
  startData: r(354, '', 'End data with <CR><LF>.<CR><LF>'),
  startTls: r(220, '2.0.0', 'Ready to start TLS'),
  startTlsSyntax: r(501, '5.5.4', 'Error: syntax: STARTTLS'),
  tlsActive: r(503, '5.5.1', 'Error: TLS already active'),
  vrfySyntax: r(501, '5.5.4', 'Error: Syntax: VRFY address'),
  // RFC 5321 3.5.3: 252, a mailbox is neither confirmed nor denied.
  vrfy: r(252, '2.1.5', 'Try to send something. No promises though'),
  noop: r(250, '2.0.0', 'OK'),
  rset: r(250, '2.0.0', 'Flushed'),
  help: r(214, '2.0.0', 'See https://tools.ietf.org/html/rfc5321 for details'),
  quit: r(221, '2.0.0', 'Bye'),
} as const;
