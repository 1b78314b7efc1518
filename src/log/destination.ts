// Where the JSON log lines go: stdout (journald, docker logs) or `log.file`, which is reopened on
// SIGUSR1 so logrotate can move it away (`postrotate: systemctl kill -s USR1 mailgate`).
import pino, { type Logger } from 'pino';

export interface LogSettings {
  level: string;
  file?: string | undefined;
}

export interface LogOutput {
  logger: Logger;
  /** Reopens `log.file` (after logrotate renamed it); a no-op for stdout. */
  reopen(): void;
  /** Writes what is buffered. */
  flush(): void;
}

export function createLogOutput(settings: LogSettings): LogOutput {
  const base = { svc: 'mailgate' };
  if (settings.file === undefined) {
    return { logger: pino({ level: settings.level, base }), reopen: () => undefined, flush: () => undefined };
  }
  // sync: each line is written when logged, so nothing is lost if the process dies; mkdir: the
  // directory (e.g. under StateDirectory) may not exist yet on first start.
  const dest = pino.destination({ dest: settings.file, mkdir: true, sync: true, append: true });
  const logger = pino({ level: settings.level, base }, dest);
  return {
    logger,
    reopen: () => dest.reopen(),
    flush: () => dest.flushSync(),
  };
}
