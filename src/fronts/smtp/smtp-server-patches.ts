// Workarounds for smtp-server gaps, applied to each connection: replies with our own enhanced
// codes, a HELO/EHLO stage hook, RSET passed on to the core (and the backend), max_errors before
// smtp-server parses MAIL/RCPT/DATA. They reach into smtp-server internals, so they are pinned to
// the version below; test/unit/smtp-server-patches.test.ts fails when the installed one differs.
import type { Conn } from './smtp-connection.ts';

export type { Conn };
import type { ClientSession } from './session.ts';
import { replies } from '../../pipeline/reply.ts';
import { watchSlowClients } from './slow-client-watchdog.ts';

/** The smtp-server version these patches were written and tested against. */
export const PATCHED_SMTP_SERVER_VERSION = '3.21.6';

const ENHANCED_PREFIX = /^([245]\.\d{1,3}\.\d{1,3}) /;

/**
 * smtp-server gaps worked around per connection:
 *  - replies we build carry their own enhanced status code ("5.7.1 text"): send them as is,
 *    without smtp-server adding a generic one; multi-line texts become multi-line replies;
 *  - smtp-server has no HELO/EHLO hook: wrap the handlers so the helo stage can refuse;
 *  - smtp-server pauses 100 ms before every greeting: skipped (see #accept);
 *  - RSET has no hook (the core and the backend must reset too); junk commands are not limited.
 */
export function patchConnection(conn: Conn, session: ClientSession): void {
  const send = conn.send.bind(conn);
  /** The MAIL/RCPT/DATA handler running synchronously now (smtp-server refuses syntax there). */
  let verb: string | undefined;
  conn.send = (code, data, context) => {
    const ours = typeof data === 'string' && ENHANCED_PREFIX.test(data);
    if (!ours && code >= 400) {
      // smtp-server's own refusals (syntax, sequence, HTTP, over-long lines): README promises a
      // log line for bad input, and refused MAIL/RCPT/DATA count towards limits.max_errors.
      const text = Array.isArray(data) ? data.join(' ') : data;
      session.log.info({ reply: `${code} ${text}`, command: verb ?? (typeof context === 'string' ? context : undefined) }, 'protocol error');
      if (verb && code !== 421) session.errors++;
    }
    if (typeof data === 'string') {
      const m = ENHANCED_PREFIX.exec(data);
      if (m) {
        const enhanced = m[1] as string;
        const lines = data.slice(enhanced.length + 1).split('\n');
        send(
          code,
          lines.map((l) => `${enhanced} ${l}`),
          false,
        );
        return;
      }
    }
    send(code, data, context);
  };
  for (const v of ['MAIL', 'RCPT', 'DATA'] as const) {
    const key = `handler_${v}` as const;
    const original = conn[key].bind(conn);
    conn[key] = (command: Buffer, cb: () => void) => {
      const max = session.rt.config.limits.max_errors;
      if (session.errors >= max) {
        const r = replies.tooManyErrors(session.errors);
        conn.send(r.code, `${r.enhanced} ${r.text}`);
        return cb();
      }
      verb = v;
      try {
        original(command, cb);
      } finally {
        verb = undefined;
      }
    };
  }
  patchRsetAndJunk(conn, session);
  watchSlowClients(conn, session);
  for (const verb of ['EHLO', 'HELO'] as const) {
    const key = `handler_${verb}` as const;
    const original = conn[key].bind(conn);
    conn[key] = (command: Buffer, cb: () => void) => {
      const parts = command.toString().trim().split(/\s+/);
      // smtp-server answers the syntax error (501) itself: a name it refuses must never become
      // session.helo (Received, XCLIENT HELO, helo.name), so it is checked before the stage.
      if (parts.length !== 2 || !isAcceptableHelo(parts[1] as string)) return original(command, cb);
      session.onHelo(parts[1] as string, verb === 'EHLO').then(
        (refuse) => {
          if (refuse) {
            conn.send(refuse.code, `${refuse.enhanced} ${refuse.text}`);
            if (refuse.code === 421) conn.close();
            return cb();
          }
          original(command, cb);
        },
        (err: unknown) => {
          session.log.error({ err: (err as Error).message }, 'internal error in helo stage');
          const r = replies.localError('internal error');
          conn.send(r.code, `${r.enhanced} ${r.text}`);
          cb();
        },
      );
    };
  }
}

/** smtp-server's own test for a HELO/EHLO argument (smtp-connection.js isAcceptableHeloHostname). */
function isAcceptableHelo(name: string): boolean {
  return name.length <= 300 && !/[\x00-\x1F\x7F-\x9F]/.test(name);
}

/** Commands that do nothing for a transaction; a client repeating them only holds its slot. */
const JUNK_COMMANDS = ['RSET', 'NOOP', 'HELP', 'VRFY'] as const;

/**
 * smtp-server answers RSET itself without a hook: the core must end its transaction (and the
 * backend's) before the 250. Junk commands are counted (Postfix smtpd_junk_command_limit).
 */
function patchRsetAndJunk(conn: Conn, session: ClientSession): void {
  let junk = 0;
  for (const v of JUNK_COMMANDS) {
    const key = `handler_${v}` as const;
    const original = conn[key].bind(conn);
    conn[key] = (command: Buffer, cb: () => void) => {
      const max = session.rt.config.limits.max_junk_commands;
      if (++junk > max) {
        const r = replies.tooManyJunkCommands(max);
        conn.send(r.code, `${r.enhanced} ${r.text}`);
        conn.close();
        return cb();
      }
      if (v !== 'RSET') return original(command, cb);
      session.onRset().then(
        () => original(command, cb),
        () => original(command, cb),
      );
    };
  }
}
