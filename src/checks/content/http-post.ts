// One HTTP POST of a spooled message to a scanner (Rspamd, an HTTP hook): the body is streamed
// from the spool with its Content-Length, the answer read up to a cap, all under one timeout.
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';

export interface PostResult {
  status: number;
  body: string;
}

const MAX_ANSWER = 1024 * 1024;

export async function postMessage(
  url: URL,
  headers: Record<string, string | string[]>,
  body: () => NodeJS.ReadableStream,
  size: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<PostResult> {
  // process.getBuiltinModule, not `import`: Node's ESM wrapper of node:http reads every export,
  // lazy ones included, and so loads its bundled undici (WebSocket, fetch): +2 MiB of JS heap and
  // ≈ 10 MiB RSS in every process whose config has an HTTP scanner or not (bench/HISTORY.md).
  const mod = url.protocol === 'https:' ? process.getBuiltinModule('node:https') : process.getBuiltinModule('node:http');
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  const onAbort = () => ac.abort(new Error('aborted'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await new Promise<PostResult>((resolve, reject) => {
      const req = mod.request(url, { method: 'POST', headers: { ...headers, 'Content-Length': String(size) }, signal: ac.signal }, (res) => {
        const chunks: Buffer[] = [];
        let got = 0;
        res.on('data', (c: Buffer) => {
          got += c.length;
          if (got > MAX_ANSWER) {
            req.destroy(new Error('answer too large'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', (err) => reject(ac.signal.aborted && ac.signal.reason instanceof Error ? ac.signal.reason : err));
      pipeline(body() as Readable, req).catch((err: unknown) => reject(err as Error));
    });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Envelope facts every scanner is told about, read from the transaction's facts. */
export interface Envelope {
  from: string;
  rcpts: string[];
  ip: string;
  helo: string;
}

export function envelopeOf(facts: { get(name: string): unknown }): Envelope {
  const str = (n: string) => {
    const v = facts.get(n);
    return typeof v === 'string' ? v : '';
  };
  const r = facts.get('rcpt.addresses');
  return {
    from: str('mail.from'),
    rcpts: Array.isArray(r) ? r.filter((x): x is string => typeof x === 'string') : [],
    ip: str('client.ip'),
    helo: str('helo.name'),
  };
}

/** Header values must not carry CR/LF or non-ASCII (the addresses come from the client). */
export function headerSafe(s: string): string {
  let out = '';
  for (const ch of s.slice(0, 512)) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c > 0x7e ? '?' : ch;
  }
  return out;
}
