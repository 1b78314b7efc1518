// The SMTP front: our own TCP listeners (connection limits, PROXY v1/v2, pregreet detection,
// implicit TLS) that hand each socket to mailgate's SMTP engine (engine.ts) over ClientSession.
// The socket side of the engine (writes, back-pressure, STARTTLS, half-close) is SocketTransport.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

// Connection ids: a random per-process prefix and a counter — unique across restarts and
// workers without a crypto call per connection.
const ID_PREFIX = randomBytes(4).toString('hex');
let idCounter = 0;
function nextConnectionId(): string {
  return `${ID_PREFIX}${(++idCounter).toString(36).padStart(6, '0')}`;
}
import type { ListenConfig } from '../../config/schema.ts';
import { ClientSession } from './session.ts';
import { SmtpEngine, type Transport } from './engine.ts';
import { readProxyHeader } from './proxy-protocol.ts';
import { SmtpReply, replies } from '../../pipeline/reply.ts';
import type { TlsInfo } from '../../pipeline/transaction.ts';
import { metrics } from '../../metrics/registry.ts';
import { ipInList } from '../../net/ip.ts';
import type { Runtime } from '../../pipeline/runtime.ts';

const MIN_TLS = 'TLSv1.2' as const;

export class Listener {
  readonly cfg: ListenConfig;
  readonly rt: Runtime;
  readonly server: net.Server;
  readonly sessions: Map<string, { session: ClientSession; conn: SmtpEngine }>;
  /** STARTTLS and implicit TLS: TLS 1.2 or later, whatever the host's defaults say (RFC 8996). */
  #tlsContext: tls.SecureContext | undefined;
  /** The bound port: every socket accepted here has it as its local port (no getsockname each). */
  #port: number | undefined;

  constructor(rt: Runtime, cfg: ListenConfig, sessions: Map<string, { session: ClientSession; conn: SmtpEngine }>, counters: ConnCounters) {
    this.rt = rt;
    this.cfg = cfg;
    this.sessions = sessions;
    if (cfg.tls) this.#tlsContext = tls.createSecureContext({ key: readFileSync(cfg.tls.key), cert: readFileSync(cfg.tls.cert), minVersion: MIN_TLS });
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
      void this.#accept(socket, counters);
    });
    this.server.on('error', (err) => rt.logger.error({ err: err.message, listen: `${cfg.host}:${cfg.port}` }, 'listener error'));
  }

  /** Re-reads certificate and key (SIGHUP); new handshakes use them, open sessions keep theirs. */
  reloadTls(): void {
    if (!this.cfg.tls) return;
    this.#tlsContext = tls.createSecureContext({ key: readFileSync(this.cfg.tls.key), cert: readFileSync(this.cfg.tls.cert), minVersion: MIN_TLS });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.cfg.port, this.cfg.host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        this.#port = typeof a === 'object' && a ? a.port : undefined;
        resolve(this.#port ?? this.cfg.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  async #accept(socket: net.Socket, counters: ConnCounters): Promise<void> {
    const rt = this.rt;
    const lim = rt.config.limits;
    socket.on('error', () => undefined); // errors before hand-over end the socket; nothing to do
    const refuse = (reason: string, reply: SmtpReply) => {
      metrics.connectionsRefused.inc({ reason });
      socket.end(`${reply.code} ${reply.enhanced} ${reply.text}\r\n`);
      setTimeout(() => socket.destroy(), 2000).unref();
    };
    if (rt.draining) return refuse('shutdown', replies.shuttingDown());
    if (counters.total >= lim.max_connections) return refuse('max_connections', replies.tooManyConnections());
    counters.total++;
    let ipCounted: string | undefined;
    socket.once('close', () => {
      counters.total--;
      if (ipCounted !== undefined) counters.release(ipCounted);
    });
    let ip = normalizeIp(socket.remoteAddress ?? '');
    let port = socket.remotePort ?? 0;
    let proxyIp: string | undefined;
    if (this.cfg.proxy_protocol !== false) {
      // Only listed load balancers may speak PROXY: `true` is refused by the config schema, and
      // is treated here as "nobody" should a programmatic config carry it.
      const pp = this.cfg.proxy_protocol;
      const trusted = Array.isArray(pp) && ipInList(ip, pp);
      if (!trusted) {
        rt.logger.warn({ ip }, 'PROXY protocol listener: connection from an untrusted address refused');
        return refuse('proxy_untrusted', new SmtpReply(421, '4.7.0', 'Not accepting connections from this address'));
      }
      try {
        const info = await readProxyHeader(socket, 10_000);
        if (info.sourceAddress) {
          proxyIp = ip;
          ip = normalizeIp(info.sourceAddress);
          port = info.sourcePort ?? 0;
        }
      } catch (err) {
        rt.logger.warn({ ip, err: (err as Error).message }, 'bad PROXY protocol header');
        metrics.connectionsRefused.inc({ reason: 'proxy_header' });
        socket.destroy();
        return;
      }
    }
    if (counters.perIp(ip) >= lim.max_connections_per_ip) return refuse('max_connections_per_ip', replies.tooManyConnectionsFromIp(ip));
    counters.acquire(ip);
    ipCounted = ip;
    // Pregreet: a client that talks before our banner is a bot that does not wait for replies.
    let pregreet: boolean | undefined;
    const delay = rt.config.smtp.banner_delay_ms;
    if (delay > 0) {
      pregreet = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => {
          socket.off('readable', onReadable);
          resolve(false);
        }, delay);
        const onReadable = () => {
          clearTimeout(t);
          resolve(true);
        };
        socket.once('readable', onReadable);
      });
      if (socket.destroyed) return;
    }
    let stream: net.Socket | tls.TLSSocket = socket;
    if (this.cfg.tls?.implicit && this.#tlsContext) {
      const t = await handshake(socket, this.#tlsContext, rt.config.smtp.tls_handshake_timeout_ms);
      // A client that never starts (or never finishes) the handshake would hold its slot forever.
      if (!t) return;
      stream = t;
    }
    metrics.connectionsTotal.inc();
    metrics.connectionsActive.inc();
    socket.once('close', () => metrics.connectionsActive.dec());
    const id = nextConnectionId();
    const info: ConstructorParameters<typeof ClientSession>[1] = {
      id,
      ip,
      port,
      localPort: this.#port ?? socket.localPort ?? 0,
      proxied: proxyIp !== undefined,
    };
    if (proxyIp) info.proxyIp = proxyIp;
    if (pregreet !== undefined) info.pregreet = pregreet;
    const session = new ClientSession(rt, info);
    const transport = new SocketTransport(stream, () => this.#tlsContext, rt.config.smtp.tls_handshake_timeout_ms);
    // SIZE and the idle timeout as configured now: a SIGHUP'd config applies to new connections.
    const engine = new SmtpEngine(transport, session, {
      hostname: rt.config.hostname,
      banner: rt.config.smtp.banner,
      clientIp: ip,
      size: lim.max_message_bytes,
      starttls: !!this.cfg.tls && !this.cfg.tls.implicit,
      ...(stream instanceof tls.TLSSocket ? { secure: tlsInfo(stream) } : {}),
      limits: () => rt.config.limits,
      idleMs: lim.idle_timeout_s * 1000,
    });
    transport.attach(engine, (err) => session.log.debug({ err: err.message }, 'connection error'));
    this.sessions.set(id, { session, conn: engine });
    socket.once('close', () => this.sessions.delete(id));
    socket.resume();
    void engine.start();
  }
}

/** The TLS facts the core records (tls.version, tls.cipher; the Received field). */
function tlsInfo(t: tls.TLSSocket): TlsInfo {
  const version = t.getProtocol();
  const cipher = t.getCipher()?.name;
  return { ...(version ? { version } : {}), ...(cipher ? { cipher } : {}) };
}

/** Server side of a TLS handshake on `socket`, bounded by `timeoutMs`; undefined (and both closed) when it fails. */
function handshake(socket: net.Socket, context: tls.SecureContext, timeoutMs: number): Promise<tls.TLSSocket | undefined> {
  const t = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
  // Never an unhandled 'error', whenever it comes (the transport logs the ones after the handshake).
  t.on('error', () => undefined);
  return new Promise((resolve) => {
    const fail = () => {
      clearTimeout(deadline);
      t.destroy();
      socket.destroy();
      resolve(undefined);
    };
    const deadline = setTimeout(() => {
      metrics.connectionsRefused.inc({ reason: 'tls_handshake_timeout' });
      fail();
    }, timeoutMs);
    t.once('secure', () => {
      clearTimeout(deadline);
      t.off('error', fail);
      resolve(t);
    });
    t.once('error', fail);
  });
}

/**
 * The engine's socket: replies written as given (one write per batch), back-pressure both ways,
 * STARTTLS on the same TCP connection, and a bounded half-close. Errors on either socket are
 * logged and end the connection; none can go unhandled.
 */
class SocketTransport implements Transport {
  #socket: net.Socket | tls.TLSSocket;
  readonly #context: () => tls.SecureContext | undefined;
  readonly #handshakeMs: number;
  #engine: SmtpEngine | undefined;
  readonly #onData = (chunk: Buffer) => this.#engine?.receive(chunk);
  readonly #onClose = () => this.#engine?.gone();
  #onError: (err: Error) => void = () => undefined;

  constructor(socket: net.Socket | tls.TLSSocket, context: () => tls.SecureContext | undefined, handshakeMs: number) {
    this.#socket = socket;
    this.#context = context;
    this.#handshakeMs = handshakeMs;
  }

  attach(engine: SmtpEngine, onError: (err: Error) => void): void {
    this.#engine = engine;
    this.#onError = onError;
    this.#wire(this.#socket);
  }

  #wire(s: net.Socket | tls.TLSSocket): void {
    s.on('data', this.#onData);
    s.once('close', this.#onClose);
    s.on('error', this.#onError);
  }

  write(data: string): void {
    const s = this.#socket;
    if (!s.destroyed && s.writable) s.write(data);
  }

  get needsDrain(): boolean {
    return this.#socket.writableNeedDrain;
  }

  onceDrain(fn: () => void): void {
    this.#socket.once('drain', fn);
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  end(destroyAfterMs: number, quit = false): void {
    const s = this.#socket;
    if (s.destroyed) return;
    if (s.writable) s.end();
    if (quit) {
      // After the 221 the session is over (RFC 5321 4.1.1.10): close once the reply and our FIN
      // are in the kernel, as Postfix's smtpd does, without waiting for the client's FIN. A client
      // sends nothing after QUIT, so the kernel still delivers the 221 and closes with a FIN. (Not
      // for other closes: a client refused mid-DATA is still sending, and closing on unread data
      // is a RST that can lose the reply; those wait for its FIN below.) A client that resets
      // after the 221, as smtp-source does, then meets a closed socket: no error to build.
      if (s.writableFinished) return void s.destroy();
      s.once('finish', () => s.destroy());
    }
    // Keep reading (and dropping) so the client's FIN is seen; a client that never closes its
    // side is cut off after destroyAfterMs, which nothing it sends extends.
    s.resume();
    const t = setTimeout(() => s.destroy(), destroyAfterMs);
    t.unref();
    s.once('close', () => clearTimeout(t));
  }

  startTls(): Promise<TlsInfo | undefined> {
    const raw = this.#socket;
    const context = this.#context();
    // From here on the raw socket's bytes belong to the TLS layer, never to the engine.
    raw.off('data', this.#onData);
    if (!context) {
      raw.destroy();
      return Promise.resolve(undefined);
    }
    return handshake(raw as net.Socket, context, this.#handshakeMs).then((t) => {
      if (!t) return undefined;
      this.#socket = t;
      this.#wire(t);
      return tlsInfo(t);
    });
  }
}

export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/** Open connection counts, total and per client IP (this process). */
export class ConnCounters {
  total = 0;
  #perIp = new Map<string, number>();
  perIp(ip: string): number {
    return this.#perIp.get(ip) ?? 0;
  }
  acquire(ip: string): void {
    this.#perIp.set(ip, this.perIp(ip) + 1);
  }
  release(ip: string): void {
    const n = this.perIp(ip) - 1;
    if (n <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, n);
  }
}
