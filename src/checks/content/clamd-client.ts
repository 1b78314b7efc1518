// A small clamd client: INSTREAM (clamd(8): 4-byte big-endian length-prefixed chunks, a
// zero-length chunk ends) over TCP or a Unix socket, at most `poolSize` scans at once, a timeout
// on every scan. Written here: it is small, and a protocol answer is a result, never an exception.
import net from 'node:net';

export interface ClamdOptions {
  socket?: string;
  host: string;
  port: number;
  connectTimeoutMs: number;
  timeoutMs: number;
  /** StreamMaxLength of the clamd: more is never sent. */
  streamMaxBytes: number;
  /** Most scans in flight at once (clamd MaxThreads); the others wait their turn. */
  poolSize?: number;
}

export type ScanResult =
  | { result: 'clean' }
  | { result: 'virus'; signature: string }
  /** clamd could not scan it completely: size limit, Heuristics.Limits.Exceeded, ... */
  | { result: 'unscanned'; reason: string }
  | { result: 'error'; reason: string };

function connect(o: ClamdOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = o.socket ? net.connect(o.socket) : net.connect(o.port, o.host);
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`clamd connect timeout after ${o.connectTimeoutMs} ms`));
    }, o.connectTimeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/** Parses one clamd answer ("stream: OK", "stream: Eicar FOUND", "... ERROR"). */
export function parseAnswer(line: string): ScanResult {
  // Answers in a session are prefixed with "<id>: ".
  const text = line.replace(/^\d+: /, '').trim();
  if (text.endsWith(' FOUND')) {
    const body = text.slice(0, -' FOUND'.length);
    const colon = body.indexOf(': ');
    const sig = colon >= 0 ? body.slice(colon + 2) : body;
    // clamd reports its limits as a detection with heuristic alerts on; that is "not scanned".
    if (sig.startsWith('Heuristics.Limits.Exceeded')) return { result: 'unscanned', reason: sig };
    return { result: 'virus', signature: sig.slice(0, 200) };
  }
  if (text.endsWith(' OK') || text === 'OK') return { result: 'clean' };
  if (text.includes('size limit exceeded')) return { result: 'unscanned', reason: 'INSTREAM size limit exceeded' };
  return { result: 'error', reason: text.slice(0, 200) || 'empty answer' };
}

export class ClamdClient {
  readonly #o: ClamdOptions;
  #active = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(options: ClamdOptions) {
    this.#o = options;
  }

  async #acquire(): Promise<void> {
    const max = Math.max(1, this.#o.poolSize ?? 4);
    if (this.#active < max) {
      this.#active++;
      return;
    }
    await new Promise<void>((r) => this.#waiting.push(r));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }

  /** Like scan(), within the pool bound. */
  async scanPooled(source: () => AsyncIterable<Buffer | string> | Iterable<Buffer>, signal?: AbortSignal): Promise<ScanResult> {
    await this.#acquire();
    try {
      return await this.scan(source(), signal);
    } finally {
      this.#release();
    }
  }

  get description(): string {
    return this.#o.socket ? `unix:${this.#o.socket}` : `${this.#o.host}:${this.#o.port}`;
  }

  /** zPING → PONG. */
  async ping(): Promise<boolean> {
    try {
      const s = await connect(this.#o);
      const answer = await this.#exchange(s, Buffer.from('zPING\0'), this.#o.connectTimeoutMs);
      s.destroy();
      return answer === 'PONG';
    } catch {
      return false;
    }
  }

  /** Reads one NUL-terminated answer (z-commands), bounded in size and time. */
  #exchange(s: net.Socket, send: Buffer | undefined, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      let buf = '';
      const done = (err: Error | undefined, v?: string) => {
        clearTimeout(t);
        s.off('data', onData);
        s.off('error', onErr);
        s.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(v ?? '');
      };
      const onData = (d: Buffer) => {
        buf += d.toString('latin1');
        const z = buf.indexOf('\0');
        if (z >= 0) done(undefined, buf.slice(0, z));
        else if (buf.length > 4096) done(new Error('clamd answer too long'));
      };
      const onErr = (err: Error) => done(err);
      // clamd closes the connection after an INSTREAM size error; the text came first.
      const onClose = () => (buf ? done(undefined, buf.replace(/\0+$/, '')) : done(new Error('clamd closed the connection without an answer')));
      const onAbort = () => {
        s.destroy();
        done(new Error('clamd scan aborted'));
      };
      const t = setTimeout(() => {
        s.destroy();
        done(new Error(`clamd did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      s.on('data', onData);
      s.once('error', onErr);
      s.once('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (send) s.write(send);
    });
  }

  /**
   * Streams `source` with INSTREAM. Stops sending at streamMaxBytes (the answer is then
   * 'unscanned', never 'clean'). Connection problems and timeouts are `error` results.
   */
  async scan(source: AsyncIterable<Buffer | string> | Iterable<Buffer>, signal?: AbortSignal): Promise<ScanResult> {
    let s: net.Socket;
    try {
      s = await connect(this.#o);
    } catch (err) {
      return { result: 'error', reason: `clamd ${this.description}: ${(err as Error).message}` };
    }
    const deadline = Date.now() + this.#o.timeoutMs;
    try {
      const answer = this.#exchange(s, undefined, this.#o.timeoutMs, signal);
      answer.catch(() => undefined);
      s.write('zINSTREAM\0');
      let sent = 0;
      let over = false;
      for await (const raw of source) {
        if (signal?.aborted || s.destroyed) break;
        let chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
        if (sent + chunk.length > this.#o.streamMaxBytes) {
          over = true;
          break;
        }
        sent += chunk.length;
        // Chunks of at most 64 KiB, each with its length (network byte order).
        while (chunk.length > 0) {
          const part = chunk.subarray(0, 65_536);
          chunk = chunk.subarray(part.length);
          const len = Buffer.alloc(4);
          len.writeUInt32BE(part.length);
          s.write(len);
          if (!s.write(part)) {
            let onDrain: () => void = () => undefined;
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([
              new Promise<void>((r) => {
                onDrain = r;
                s.once('drain', onDrain);
              }),
              answer.then(
                () => undefined,
                () => undefined,
              ),
              new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now())))),
            ]);
            s.off('drain', onDrain);
            clearTimeout(timer);
            if (Date.now() >= deadline || s.destroyed) break;
          }
        }
      }
      if (over) {
        s.destroy();
        return { result: 'unscanned', reason: `message larger than stream_max_bytes (${this.#o.streamMaxBytes})` };
      }
      if (!s.destroyed) s.write(Buffer.alloc(4));
      const line = await answer;
      return parseAnswer(line);
    } catch (err) {
      return { result: 'error', reason: `clamd ${this.description}: ${(err as Error).message}` };
    } finally {
      s.destroy();
    }
  }
}
