// Child process for the crash test: quarantines large messages in a loop into DIR and prints
// "ACK <id>" after each put() resolved (the moment a client would be told 250). The parent kills
// it with SIGKILL at some point mid-write. messageFor() makes the same bytes in the parent.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

export const CHUNK = 64 * 1024;
export const CHUNKS = 48; // 3 MB per message, streamed

/** The deterministic bytes of message `id`, as a stream of chunks (and their SHA-256). */
export function messageFor(id: string): { stream: () => Readable; sha256: string; size: number } {
  const header = Buffer.from(`Subject: crash test ${id}\r\nMessage-ID: <${id}@test>\r\n\r\n`);
  const chunk = (i: number) => Buffer.alloc(CHUNK, `${id}:${i}:0123456789abcdef\r\n`);
  const h = createHash('sha256').update(header);
  for (let i = 0; i < CHUNKS; i++) h.update(chunk(i));
  return {
    stream: () =>
      Readable.from(
        (async function* () {
          yield header;
          for (let i = 0; i < CHUNKS; i++) {
            yield chunk(i);
            // Let the parent's SIGKILL land in the middle of a write, not only between puts.
            if (i % 8 === 0) await new Promise((r) => setImmediate(r));
          }
        })(),
      ),
    sha256: h.digest('hex'),
    size: header.length + CHUNK * CHUNKS,
  };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() as string) && process.argv[2]) {
  const { QuarantineStore } = await import('../../src/delivery/quarantine/store.ts');
  const { quarantineSchema } = await import('../../src/config/quarantine-schema.ts');
  const store = new QuarantineStore({ config: quarantineSchema.parse({ dir: process.argv[2] }) });
  const prefix = process.argv[3] ?? 'W';
  for (let n = 0; ; n++) {
    const id = `${prefix}${String(n).padStart(5, '0')}`;
    const m = messageFor(id);
    await store.put(
      {
        id,
        received: new Date().toISOString(),
        client: { ip: '192.0.2.7', helo: 'crash' },
        from: 's@example.net',
        rcpts: ['alice@example.test'],
        size: m.size,
        reason: 'test',
        score: 10,
        rules: ['CRASH'],
      },
      [m.stream()],
    );
    process.stdout.write(`ACK ${id}\n`);
  }
}
