// The milter listener: a TCP (`inet:port@host`) or Unix-socket (`unix:/path`, with mode and
// owner) server the MTA connects to, one MilterSession per connection, with the same connection
// limit as the SMTP front. Malformed or oversized packets close the connection with a log line.
import cluster from 'node:cluster';
import net from 'node:net';
import { chmodSync, chownSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { MilterSession } from './milter-session.ts';
import { milterMetrics } from './milter-metrics.ts';
import type { MilterPipelineFactory } from './milter-pipeline.ts';
import type { MilterAddress } from '../../net/milter-address.ts';

export interface MilterListenerOptions {
  address: MilterAddress;
  /** Unix socket: file mode, e.g. 0o660. */
  mode?: number;
  /** Unix socket: "user", "user:group" or numeric ids. */
  owner?: string;
  maxConnections: number;
  maxPacketBytes: number;
  idleTimeoutMs: number;
  pipeline: MilterPipelineFactory;
  logger: Logger;
}

const ID_PREFIX = randomBytes(4).toString('hex');
let idCounter = 0;

export class MilterListener {
  readonly #o: MilterListenerOptions;
  readonly #server: net.Server;
  readonly #sessions = new Map<MilterSession, net.Socket>();
  #draining = false;

  constructor(o: MilterListenerOptions) {
    this.#o = o;
    this.#server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server.on('error', (err) => o.logger.error({ err: err.message, listen: describe(o.address) }, 'milter listener error'));
  }

  get description(): string {
    return describe(this.#o.address);
  }

  /** Open connections now (tests, shutdown). */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Transactions in flight now (shutdown waits for them). */
  get busy(): number {
    let n = 0;
    for (const s of this.#sessions.keys()) if (s.inTransaction) n++;
    return n;
  }

  /** Starts listening; resolves with the bound port (0 for a Unix socket). */
  async listen(): Promise<number> {
    const a = this.#o.address;
    if (a.kind === 'unix') await removeStaleSocket(a.path);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      const done = () => {
        this.#server.off('error', reject);
        resolve();
      };
      if (a.kind === 'unix') this.#server.listen(a.path, done);
      else this.#server.listen(a.port, a.host, done);
    });
    if (a.kind === 'unix') {
      if (this.#o.mode !== undefined) chmodSync(a.path, this.#o.mode);
      if (this.#o.owner !== undefined) {
        const ids = resolveOwner(this.#o.owner);
        chownSync(a.path, ids.uid, ids.gid);
      }
      return 0;
    }
    const addr = this.#server.address();
    return typeof addr === 'object' && addr ? addr.port : a.port;
  }

  /** Stops accepting, waits up to `graceMs` for transactions in flight, then closes every connection. */
  async close(graceMs = 0): Promise<void> {
    this.#draining = true;
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    const deadline = Date.now() + graceMs;
    while (this.busy > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const ends: Promise<void>[] = [];
    for (const [session, socket] of this.#sessions) {
      socket.destroy();
      ends.push(session.end());
    }
    await Promise.all(ends);
    await closed;
    // With workers, the primary owns the shared socket: the last worker out must not pull it
    // from under the others; the next start clears it (removeStaleSocket).
    if (this.#o.address.kind === 'unix' && !cluster.isWorker) unlinkQuietly(this.#o.address.path);
  }

  #accept(socket: net.Socket): void {
    const o = this.#o;
    socket.on('error', () => undefined); // a reset by the MTA ends the session below; nothing else to do
    if (this.#draining || this.#sessions.size >= o.maxConnections) {
      milterMetrics.connectionsRefused.inc({ reason: this.#draining ? 'shutdown' : 'max_connections' });
      o.logger.warn(
        { open: this.#sessions.size },
        this.#draining ? 'milter connection refused: shutting down' : 'milter connection refused: limits.max_connections reached',
      );
      // Closing without a reply: Postfix applies milter_default_action (tempfail recommended).
      socket.destroy();
      return;
    }
    milterMetrics.connections.inc();
    milterMetrics.connectionsActive.inc();
    const id = `${ID_PREFIX}m${(++idCounter).toString(36).padStart(6, '0')}`;
    const log = o.logger.child({ cid: id, front: 'milter' });
    const session = new MilterSession({
      id,
      log,
      pipeline: o.pipeline,
      maxPacketBytes: o.maxPacketBytes,
      write: (b) => {
        if (!socket.destroyed) socket.write(b);
      },
      close: () => {
        // Flush what we answered, then make sure a peer that keeps the socket open lets go.
        socket.end();
        setTimeout(() => socket.destroy(), 2000).unref();
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
    });
    this.#sessions.set(session, socket);
    socket.setTimeout(o.idleTimeoutMs, () => {
      log.info('milter connection idle too long; closing');
      socket.destroy();
    });
    socket.on('data', (d: Buffer) => session.feed(d));
    socket.once('close', () => {
      milterMetrics.connectionsActive.dec();
      void session.end().finally(() => this.#sessions.delete(session));
    });
  }
}

function describe(a: MilterAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `inet:${a.port}@${a.host}`;
}

/**
 * A socket file left by a previous run makes listen() fail with EADDRINUSE: remove it when
 * nobody answers on it. A live socket (another instance, or a sibling worker sharing it through
 * the cluster primary) and files that are not sockets are never touched.
 */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) return;
  } catch {
    return; // not there
  }
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
  if (!live) unlinkQuietly(path);
}

function unlinkQuietly(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // already gone
  }
}

/** "user", "user:group", "1000:1000" → ids, from /etc/passwd and /etc/group (no native addon needed). */
export function resolveOwner(owner: string): { uid: number; gid: number } {
  const [user = '', group] = owner.split(':');
  const passwd = readTable('/etc/passwd');
  const u = /^\d+$/.test(user)
    ? { uid: Number(user), gid: Number(passwd.find((r) => r[2] === user)?.[3] ?? -1) }
    : (() => {
        const row = passwd.find((r) => r[0] === user);
        if (!row) throw new Error(`milter.owner: unknown user "${user}"`);
        return { uid: Number(row[2]), gid: Number(row[3]) };
      })();
  if (group === undefined || group === '') return u;
  if (/^\d+$/.test(group)) return { uid: u.uid, gid: Number(group) };
  const row = readTable('/etc/group').find((r) => r[0] === group);
  if (!row) throw new Error(`milter.owner: unknown group "${group}"`);
  return { uid: u.uid, gid: Number(row[2]) };
}

function readTable(file: string): string[][] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}
