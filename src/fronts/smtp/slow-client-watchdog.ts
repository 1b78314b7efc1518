// The slow-client watchdog (slowloris): command lines and DATA must progress at a minimum rate,
// whatever smtp-server's idle timer (which restarts on every byte) says; and a session may not
// outlive limits.max_session_s between transactions (a NOOP every few seconds holds a slot).
import type { ClientSession } from './session.ts';
import type { Conn } from './smtp-connection.ts';
import { replies } from '../../pipeline/reply.ts';

/** Postfix's smtpd_min_data_rate default: bytes/s a DATA phase must average after idle_timeout_s. */
const MIN_DATA_RATE = 500;

/**
 * Slowloris: smtp-server's idle timer restarts on every byte, so a client trickling one byte at a
 * time would hold the session (and in DATA its backend session) forever. Like Postfix
 * (smtpd_per_record_deadline, smtpd_min_data_rate): a command line must be complete within
 * idle_timeout_s of its first byte, and DATA must average MIN_DATA_RATE bytes/s after the first
 * idle_timeout_s. Looks at the parser, so it holds after STARTTLS too.
 */
export function watchSlowClients(conn: Conn, session: ClientSession): void {
  const openedAt = Date.now();
  let partialSince = 0;
  let dataSince = 0;
  const onCommand = conn._onCommand.bind(conn);
  conn._onCommand = (command, cb) => {
    partialSince = 0;
    onCommand(command, cb);
  };
  const timer = setInterval(() => {
    if (session.closed) return clearInterval(timer);
    const idleMs = session.rt.config.limits.idle_timeout_s * 1000;
    const now = Date.now();
    let late = false;
    const data = conn._dataStream;
    if (data && conn._parser && conn._parser._dataMode) {
      dataSince ||= now;
      late = now - dataSince > idleMs + ((data.byteLength ?? 0) / MIN_DATA_RATE) * 1000;
    } else {
      dataSince = 0;
      const partial = conn._parser ? conn._parser._remainder.length > 0 : false;
      if (!partial) partialSince = 0;
      else partialSince ||= now;
      late = partial && now - partialSince > idleMs;
    }
    if (late) {
      clearInterval(timer);
      const r = replies.tooSlow();
      conn.send(r.code, `${r.enhanced} ${r.text}`); // 421: smtp-server closes the connection
      return;
    }
    // Session age: a client sending NOOP every few seconds is never idle, yet does nothing. Only
    // between transactions, so a message in flight is never cut off (issue 14, item 11).
    const maxAgeMs = session.rt.config.limits.max_session_s * 1000;
    if (!session.busy && now - openedAt > maxAgeMs) {
      clearInterval(timer);
      const r = replies.sessionTooLong(session.rt.config.limits.max_session_s);
      conn.send(r.code, `${r.enhanced} ${r.text}`);
      conn.close();
    }
  }, 250);
  timer.unref();
}
