// Writes docs/replies.md, the table of every SMTP reply mailgate writes itself, from the two reply
// catalogues — the core's (src/pipeline/reply.ts: policy, limits, backend) and the SMTP front's
// protocol engine's (src/fronts/smtp/protocol-replies.ts: greeting, syntax, sequence) — so the docs
// cannot drift. `--check`: exit 1 if the file is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { replies, SmtpReply } from '../src/pipeline/reply.ts';
import { protocolReplies } from '../src/fronts/smtp/protocol-replies.ts';
import { STAGES } from '../src/pipeline/stages.ts';

export const REPLIES_MD = fileURLToPath(new URL('../docs/replies.md', import.meta.url));

/**
 * Names of the parameters without a default, from the arrow function's own source (our code,
 * not input): `(domain) =>`, `(text = '…') =>` has none. Scanned with a loop, no regex.
 */
export function requiredParams(fn: (...a: never[]) => unknown): string[] {
  const src = fn.toString();
  const arrow = src.indexOf('=>');
  // `x => …` (one parameter, no parentheses).
  if (!src.startsWith('(')) return arrow > 0 ? [src.slice(0, arrow).trim()] : [];
  const close = src.indexOf(')');
  if (close < 0) return [];
  return src
    .slice(1, close)
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && !p.includes('='))
    .map((p) => {
      const colon = p.indexOf(':');
      return colon < 0 ? p : p.slice(0, colon).trim();
    });
}

function cell(s: string): string {
  return s.replaceAll('|', '\\|');
}

function kindOf(reply: SmtpReply): string {
  // 3xx (354 to DATA) asks for more input: neither accepted nor refused yet.
  if (reply.code >= 300 && reply.code < 400) return 'intermediate';
  return reply.isOk ? 'accepted' : reply.isTemp ? 'temporary (retry)' : 'permanent';
}

/**
 * When the SMTP front's engine sends each of its own replies. A test fails when an entry of
 * protocolReplies has no line here, so a new reply cannot go undocumented.
 */
export const PROTOCOL_WHEN: Record<keyof typeof protocolReplies, string> = {
  greeting: 'on connect, once the connect stage let the client in (no enhanced code: RFC 2034 §3)',
  hello: 'EHLO (followed by the extension lines) or HELO accepted',
  ehloSyntax: 'EHLO without an argument',
  heloSyntax: 'HELO without an argument',
  badHostname: 'EHLO/HELO argument that is neither a domain nor an address literal',
  talkTooSoon: 'the client sent commands before the greeting (a spambot that does not wait); the connection closes',
  lineTooLong: 'a command line longer than 16 KiB; the connection closes',
  http: 'the first line is an HTTP request (a web client or a cross-protocol attack); the connection closes',
  tooManyBadCommands: 'the 10th unknown, unimplemented or refused command of a connection; the connection closes',
  idleTimeout: 'no command within `limits.idle_timeout_s`; the connection closes',
  unknownCommand: 'a verb mailgate does not know (or an empty line)',
  notImplemented: 'AUTH, EXPN, ETRN, TURN, ATRN, or STARTTLS when TLS is not configured',
  notAllowed: 'XCLIENT or XFORWARD (mailgate trusts the PROXY protocol instead)',
  needHelo: 'MAIL before EHLO/HELO',
  needMail: 'RCPT or DATA before MAIL',
  needRcpt: 'DATA before any accepted RCPT',
  nestedMail: 'a second MAIL inside a transaction (RSET first)',
  badSender: 'MAIL FROM without a well-formed `<address>`',
  badRecipient: 'RCPT TO without a well-formed `<address>`',
  badParameter: 'a MAIL/RCPT parameter given twice, or without its value (the text says which)',
  badSize: 'MAIL `SIZE=` that is not a number',
  sizeOverLimit: 'MAIL `SIZE=` above `limits.max_message_bytes` (RFC 1870)',
  badBody: 'MAIL `BODY=` other than 7BIT or 8BITMIME',
  badSmtputf8: 'MAIL `SMTPUTF8=` with a value',
  requireTlsPlain: 'MAIL `REQUIRETLS` on a connection without TLS (RFC 8689)',
  badRequireTls: 'MAIL `REQUIRETLS=` with a value',
  startData: 'DATA accepted: send the message',
  startTls: 'STARTTLS accepted: the TLS handshake follows (anything pipelined after it is dropped)',
  startTlsSyntax: 'STARTTLS with an argument',
  tlsActive: 'STARTTLS on a connection already in TLS',
  vrfySyntax: 'VRFY without an argument',
  vrfy: 'VRFY: neither confirms nor denies a mailbox (RFC 5321 §3.5.3)',
  noop: 'NOOP',
  rset: 'RSET: the transaction is dropped',
  help: 'HELP',
  quit: 'QUIT; the connection closes',
};

function protocolRows(): string[] {
  const rows: string[] = [];
  for (const [name, entry] of Object.entries(protocolReplies)) {
    const reply = entry instanceof SmtpReply ? entry : (entry as (...a: string[]) => SmtpReply)(...requiredParams(entry).map((p) => `<${p}>`));
    const when = PROTOCOL_WHEN[name as keyof typeof protocolReplies];
    rows.push(`| \`${name}\` | ${reply.code} | ${reply.enhanced || '–'} | \`${cell(reply.text)}\` | ${kindOf(reply)} | ${cell(when)} |`);
  }
  return rows;
}

export function renderReplyTable(): string {
  const rows: string[] = [];
  for (const [name, make] of Object.entries(replies)) {
    const params = requiredParams(make);
    // Policy defaults differ per SMTP stage: one row per stage.
    const variants = params.includes('stage')
      ? STAGES.map((s) => ({ label: `${name}(${s})`, args: [s] }))
      : [{ label: name, args: params.map((p) => `<${p}>`) }];
    for (const v of variants) {
      const reply = (make as (...a: string[]) => SmtpReply)(...v.args);
      rows.push(`| \`${v.label}\` | ${reply.code} | ${reply.enhanced} | \`${cell(reply.text)}\` | ${kindOf(reply)} |`);
    }
  }
  return [
    '<!-- Generated by scripts/gen-reply-table.ts from src/pipeline/reply.ts and src/fronts/smtp/protocol-replies.ts: do not edit by hand.',
    '     Regenerate: node_modules/.bin/node scripts/gen-reply-table.ts (test/unit/deploy-replies.test.ts fails when stale). -->',
    '# SMTP replies mailgate writes itself',
    '',
    "Every reply a client sees that is not the backend MTA's own answer (relayed as is: code, enhanced",
    "code and text) comes from one of two catalogues: the core's, below, for policy, limits and the",
    "backend; and the SMTP front's, [further down](#protocol-replies-of-the-smtp-front), for the protocol",
    'itself. `<name>` is filled in at run time.',
    '',
    '## Policy, limit and backend replies (the transaction core)',
    '',
    'Written through one mapper (src/pipeline/outcome.ts); the milter front sends the same code,',
    'enhanced code and text. Policy replies (`policyRejected`, `policyTempfailed`) are the defaults: a',
    'rule that fired overrides the code, enhanced code or text it sets (`reply:` in the rules files).',
    '',
    '| name | code | enhanced (RFC 3463) | text | class |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    '## Protocol replies of the SMTP front',
    '',
    "The SMTP front's engine (src/fronts/smtp/engine.ts) answers the protocol itself: greeting,",
    'command syntax, command order, and MAIL parameters. MAIL and RCPT that pass these checks get the',
    "core's and then the backend's answer. The texts follow smtp-server's, which clients and tests",
    'already knew. The milter front has none of these: there Postfix speaks SMTP.',
    '',
    '| name | code | enhanced (RFC 3463) | text | class | sent when |',
    '|---|---|---|---|---|---|',
    ...protocolRows(),
    '',
  ].join('\n');
}

if (import.meta.main) {
  const text = renderReplyTable();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(REPLIES_MD, 'utf8');
    } catch {
      /* missing: stale */
    }
    if (current !== text) {
      process.stderr.write(`${REPLIES_MD} is stale: run node_modules/.bin/node scripts/gen-reply-table.ts\n`);
      process.exit(1);
    }
  } else {
    writeFileSync(REPLIES_MD, text);
    process.stdout.write(`wrote ${REPLIES_MD}\n`);
  }
}
