// The SMTP front: our own TCP listeners (connection limits, PROXY v1/v2, pregreet detection,
// implicit TLS) that hand each socket to smtp-server for the protocol, with the smtp-server
// callbacks routed into ClientSession. Also works around smtp-server's known gaps (see README).
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
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Readable } from 'node:stream';
import type { ListenConfig } from '../../config/schema.ts';
import { ClientSession } from './session.ts';
import { patchConnection, type Conn } from './smtp-server-patches.ts';
import { readProxyHeader } from './proxy-protocol.ts';
import { SmtpError, SmtpReply, replies } from '../../pipeline/reply.ts';
import { metrics } from '../../metrics/registry.ts';
import { ipInList } from '../../net/ip.ts';
import type { Runtime } from '../../pipeline/runtime.ts';

const MIN_TLS = 'TLSv1.2' as const;

export class Listener {
  readonly cfg: ListenConfig;
  readonly rt: Runtime;
  readonly smtp: SMTPServer;
  readonly server: net.Server;
  readonly sessions: Map<string, { session: ClientSession; conn: Conn }>;
  #tlsContext: tls.SecureContext | undefined;

  constructor(rt: Runtime, cfg: ListenConfig, sessions: Map<string, { session: ClientSession; conn: Conn }>, counters: ConnCounters) {
    this.rt = rt;
    this.cfg = cfg;
    this.sessions = sessions;
    const lim = rt.config.limits;
    const opts: SMTPServerOptions = {
      name: rt.config.hostname,
      banner: rt.config.smtp.banner,
      size: lim.max_message_bytes,
      // Our replies carry their own enhanced codes (patched send below); smtp-server adds codes to
      // its own replies and advertises ENHANCEDSTATUSCODES.
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      hideSTARTTLS: !cfg.tls || cfg.tls.implicit,
      secure: !!cfg.tls?.implicit,
      // hideSTARTTLS only hides the keyword: smtp-server would still answer STARTTLS with 220 and
      // its bundled (public, expired) test key. Not offered means not accepted (RFC 3207 4).
      disabledCommands: !cfg.tls || cfg.tls.implicit ? ['AUTH', 'STARTTLS'] : ['AUTH'],
      authOptional: true,
      disableReverseLookup: true,
      socketTimeout: lim.idle_timeout_s * 1000,
      closeTimeout: rt.config.smtp.shutdown_grace_s * 1000,
      logger: false,
      onConnect: (s, cb) => this.#cb(s, cb, (cs) => cs.onConnect()),
      onMailFrom: (a, s, cb) =>
        this.#cb(s, cb, (cs) => {
          const t = s.tlsOptions as { name?: string; version?: string } | false | undefined;
          cs.tls = s.secure ? { ...(t && t.version ? { version: t.version } : {}), ...(t && t.name ? { cipher: t.name } : {}) } : undefined;
          return cs.onMail(a.address, (a.args || {}) as Record<string, string | true>);
        }),
      onRcptTo: (a, s, cb) => this.#cb(s, cb, (cs) => cs.onRcpt(a.address, (a.args || {}) as Record<string, string | true>)),
      onData: (stream, s, cb) => {
        const entry = this.sessions.get(s.id);
        if (!entry) {
          stream.resume();
          stream.on('end', () => cb(smtpErr(replies.localError('no session'))));
          return;
        }
        entry.session.onData(stream as Readable & { sizeExceeded?: boolean }).then(
          (r) => (r.isOk ? cb(null, `${r.enhanced} ${r.text}`) : cb(smtpErr(r))),
          (err) => cb(smtpErr(err instanceof SmtpError ? err.reply : replies.localError('internal error'))),
        );
      },
      onClose: (s) => {
        const entry = this.sessions.get(s.id);
        if (entry) {
          this.sessions.delete(s.id);
          entry.session.onClose();
        }
      },
    };
    if (cfg.tls) {
      opts.key = readFileSync(cfg.tls.key);
      opts.cert = readFileSync(cfg.tls.cert);
      // TLS 1.2 or later, whatever the Node/OpenSSL defaults of the host say (RFC 8996).
      opts.minVersion = MIN_TLS;
    }
    this.smtp = new SMTPServer(opts);
    // An unhandled 'error' on the server object would kill the process (known smtp-server gap).
    this.smtp.on('error', (err: Error) => rt.logger.debug({ err: err.message }, 'smtp-server error'));
    if (cfg.tls?.implicit) this.#tlsContext = tls.createSecureContext({ key: opts.key, cert: opts.cert, minVersion: MIN_TLS });
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
      void this.#accept(socket, counters);
    });
    this.server.on('error', (err) => rt.logger.error({ err: err.message, listen: `${cfg.host}:${cfg.port}` }, 'listener error'));
  }

  /** Re-reads certificate and key (SIGHUP); new handshakes use them, open sessions keep theirs. */
  reloadTls(): void {
    if (!this.cfg.tls) return;
    const key = readFileSync(this.cfg.tls.key);
    const cert = readFileSync(this.cfg.tls.cert);
    (this.smtp as unknown as { updateSecureContext(o: object): void }).updateSecureContext({ key, cert });
    if (this.cfg.tls.implicit) this.#tlsContext = tls.createSecureContext({ key, cert, minVersion: MIN_TLS });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.cfg.port, this.cfg.host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : this.cfg.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Wraps a session callback: resolves → success reply, SmtpError → its reply. */
  #cb(s: SMTPServerSession, cb: (err?: Error | null, msg?: string) => void, fn: (cs: ClientSession) => Promise<SmtpReply | undefined>): void {
    const entry = this.sessions.get(s.id);
    if (!entry) {
      cb(smtpErr(replies.localError('no session')));
      return;
    }
    fn(entry.session).then(
      (r) => {
        if (r && !r.isOk) cb(smtpErr(r));
        else cb(null, r ? `${r.enhanced} ${r.text}` : undefined);
      },
      (err: unknown) => {
        if (err instanceof SmtpError) {
          cb(smtpErr(err.reply));
          // 421 means "closing transmission channel" (RFC 5321 3.8): do so once it is written.
          if (err.reply.code === 421) setImmediate(() => entry.conn.close());
        } else {
          entry.session.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'internal error');
          cb(smtpErr(replies.localError('internal error')));
        }
      },
    );
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
      const t = new tls.TLSSocket(socket, { isServer: true, secureContext: this.#tlsContext });
      // A client that never starts (or never finishes) the handshake would hold its connection
      // slot forever: smtp-server's idle timer only starts after the handshake (issue 14, item 6).
      const ok = await new Promise<boolean>((resolve) => {
        const deadline = setTimeout(() => {
          metrics.connectionsRefused.inc({ reason: 'tls_handshake_timeout' });
          resolve(false);
        }, rt.config.smtp.tls_handshake_timeout_ms);
        t.once('secure', () => {
          clearTimeout(deadline);
          resolve(true);
        });
        t.once('error', () => {
          clearTimeout(deadline);
          resolve(false);
        });
      });
      if (!ok) {
        t.destroy();
        socket.destroy();
        return;
      }
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
      localPort: socket.localPort ?? 0,
      proxied: proxyIp !== undefined,
    };
    if (proxyIp) info.proxyIp = proxyIp;
    if (pregreet !== undefined) info.pregreet = pregreet;
    // smtp-server reads these from its options object (SIZE at EHLO and MAIL, the idle timer when
    // the connection is set up): refreshing them here makes a SIGHUP'd config apply to new
    // connections (issue 14, item 11).
    const smtpOptions = (this.smtp as unknown as { options: SMTPServerOptions }).options;
    smtpOptions.size = lim.max_message_bytes;
    smtpOptions.socketTimeout = lim.idle_timeout_s * 1000;
    const session = new ClientSession(rt, info);
    const conn = new (SMTPConnection as unknown as new (s: SMTPServer, sock: net.Socket, o: object) => Conn)(this.smtp, stream, {
      id,
      remoteAddress: ip,
      remotePort: port,
    });
    patchConnection(conn, session);
    this.sessions.set(id, { session, conn });
    const server = this.smtp as unknown as { connections: Set<unknown>; _onClientConnect(d: unknown): void };
    server.connections.add(conn);
    conn.on('error', (err) => session.log.debug({ err: (err as Error).message }, 'connection error'));
    conn.on('connect', (d) => server._onClientConnect(d));
    socket.resume();
    // Not conn.init(): smtp-server waits a fixed 100 ms before every greeting (its own early
    // talker check), which caps one session at ~10 messages/s. Our listener already applied the
    // configured banner_delay_ms and recorded pregreet, so greet at once.
    conn._setListeners(() => conn.connectionReady());
  }
}

function smtpErr(r: SmtpReply): Error & { responseCode: number } {
  const e = new Error(`${r.enhanced} ${r.text}`) as Error & { responseCode: number };
  e.responseCode = r.code;
  return e;
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
