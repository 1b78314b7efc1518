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
    // sync: each batch is one write(2) from the event loop thread (an asynchronous sink goes through
    // the thread pool: futex wake-ups per write, and a batch in flight at exit could not be
    // flushed); the sink never merges batches, so no write is above PIPE_BUF (see BatchedLines).
    const out = new BatchedLines(pino.destination({ dest: 1, sync: true }));
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

/** Lines wait at most this long for the batch's write. */
const BATCH_MS = 50;
/**
 * Largest batch in bytes: a write to a pipe (journald, docker) of at most PIPE_BUF bytes is
 * atomic, so lines of several processes (workers: N share stdout) never interleave mid-line.
 */
const PIPE_BUF = 4096;

/**
 * stdout lines in batches: one write per BATCH_MS or PIPE_BUF bytes instead of one per line
 * (three lines per message made it ~1.2 writes a message). The write is synchronous, as pino's
 * default stdout is: a line is never held past process exit, and lines stay in order.
 */
class BatchedLines implements DestinationStream {
  readonly #sink: ReturnType<typeof pino.destination>;
  #buf = '';
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(sink: ReturnType<typeof pino.destination>) {
    this.#sink = sink;
  }

  write(line: string): void {
    const n = Buffer.byteLength(line);
    if (this.#bytes > 0 && this.#bytes + n > PIPE_BUF) this.#out();
    this.#buf += line;
    this.#bytes += n;
    if (this.#bytes >= PIPE_BUF) this.#out();
    else this.#timer ??= setTimeout(() => this.#out(), BATCH_MS).unref();
  }

  #out(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#buf === '') return;
    const text = this.#buf;
    this.#buf = '';
    this.#bytes = 0;
    this.#sink.write(text);
  }

  flushSync(): void {
    this.#out();
    try {
      this.#sink.flushSync();
    } catch {
      // nothing buffered in the synchronous sink (it writes each batch at once)
    }
  }
}
