// Where the JSON log lines go: stdout (journald, docker logs) or `log.file`, which is reopened on
// SIGUSR1 so logrotate can move it away (`postrotate: systemctl kill -s USR1 mailgate`).
import pino, { type DestinationStream, type Logger } from 'pino';

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
    const out = new BatchedLines(pino.destination({ dest: 1, sync: false }));
    // A line still buffered when the process ends (process.exit, an uncaught exception) is written.
    process.once('exit', () => out.flushSync());
    return { logger: pino({ level: settings.level, base }, out), reopen: () => undefined, flush: () => out.flushSync() };
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

/** Lines wait at most this long, or until this many characters are buffered. */
const BATCH_MS = 50;
const BATCH_CHARS = 16 * 1024;

/**
 * stdout lines in batches: one asynchronous write per BATCH_MS or BATCH_CHARS instead of one per
 * line or two — each write is a trip through the thread pool (a write(2), futex wake-ups, an
 * event-loop wake-up); three lines per message made it ~4 futex calls and 1.2 writes a message.
 */
class BatchedLines implements DestinationStream {
  readonly #sink: ReturnType<typeof pino.destination>;
  #buf = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(sink: ReturnType<typeof pino.destination>) {
    this.#sink = sink;
  }

  write(line: string): void {
    this.#buf += line;
    if (this.#buf.length >= BATCH_CHARS) this.#out();
    else this.#timer ??= setTimeout(() => this.#out(), BATCH_MS).unref();
  }

  #out(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#buf === '') return;
    const text = this.#buf;
    this.#buf = '';
    this.#sink.write(text);
  }

  flushSync(): void {
    this.#out();
    try {
      this.#sink.flushSync();
    } catch {
      // not open yet, or being written: the asynchronous write in flight finishes on its own
    }
  }
}
