// The outbound listener: the site's MTA relays mail LEAVING the site through it (its relayhost).
// Closed except to relay_networks; BATV-signs MAIL FROM of our domains, records each Message-ID,
// and relays before-queue to the next hop, whose replies the MTA gets. No new SMTP client: BackendSession.
import net from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Logger } from 'pino';
// Types only: smtp-server itself is imported in startOutboundListener, so a gateway without an
// outbound listener never loads it (the inbound front is mailgate's own engine).
import type { SMTPServer, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import type { BackscatterConfig, OutboundConfig } from '../../config/backscatter-schema.ts';
import { BackendSession, replyText, type BackendReply } from '../../delivery/backend-client.ts';
import { ipInList } from '../../net/ip.ts';
import { batvSign } from '../../checks/backscatter/batv.ts';
import { keyringOf } from '../../checks/backscatter/batv-check.ts';
import { countBackscatter } from '../../checks/backscatter/backscatter-metrics.ts';
import { headerValue } from '../../checks/backscatter/dsn-parse.ts';
import { createOutboundRecord, type OutboundRecord } from '../../checks/backscatter/outbound-record.ts';
import type { Config } from '../../config/schema.ts';
import type { Check } from '../../pipeline/check.ts';
import type { SharedStore } from '../../store/shared-store.ts';

/** Header bytes searched for the Message-ID (the header block of a normal message is far smaller). */
const HEADER_SCAN_BYTES = 256 * 1024;

export interface OutboundListenerOptions {
  config: () => BackscatterConfig;
  /** Our domains (mailgate.yaml `domains`), lower-case: their senders are signed. */
  domains: () => ReadonlySet<string>;
  /** Our name: greeting and EHLO to the next hop (unless next_hop.helo). */
  hostname: string;
  record: OutboundRecord;
  now: () => number;
  logger: Logger;
}

interface Leg {
  link?: BackendSession;
  from?: string;
  signed?: boolean;
}

function smtpError(code: number, enhanced: string, text: string): Error & { responseCode: number } {
  const e = new Error(`${enhanced} ${text}`) as Error & { responseCode: number };
  e.responseCode = code;
  return e;
}

/** The next hop's reply as an smtp-server error (its own code, enhanced code and text). */
function relayed(r: BackendReply): Error & { responseCode: number } {
  const enhanced = r.enhanced || (r.code >= 500 ? '5.0.0' : '4.0.0');
  return smtpError(r.code, enhanced, replyText(r));
}

const unmapped = (ip: string) => (ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip);

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at === -1 ? '' : address.slice(at + 1).toLowerCase();
}

/**
 * Passes the message through unchanged while keeping its header block (up to HEADER_SCAN_BYTES)
 * for the Message-ID, and fails once more than `max` bytes came (so the next hop never gets the
 * final dot of a cut message).
 */
class HeaderTap extends Transform {
  header = '';
  #done = false;
  #size = 0;
  readonly #max: number;
  constructor(max: number) {
    super();
    this.#max = max;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#size += chunk.length;
    if (this.#size > this.#max) {
      cb(Object.assign(new Error('message too big'), { code: 'SIZE' }));
      return;
    }
    if (!this.#done) {
      this.header += chunk.toString('latin1');
      const end = this.header.indexOf('\r\n\r\n');
      if (end !== -1) {
        this.header = this.header.slice(0, end + 2);
        this.#done = true;
      } else if (this.header.length > HEADER_SCAN_BYTES) {
        this.header = this.header.slice(0, HEADER_SCAN_BYTES);
        this.#done = true;
      }
    }
    cb(null, chunk);
  }
}

export class OutboundListener {
  readonly #o: OutboundListenerOptions;
  readonly #cfg: OutboundConfig;
  readonly #smtp: SMTPServer;
  readonly #legs = new Map<string, Leg>();
  readonly #log: Logger;
  #port = 0;

  constructor(o: OutboundListenerOptions, Server: typeof SMTPServer) {
    const cfg = o.config().outbound;
    if (!cfg) throw new Error('backscatter.outbound is not configured');
    this.#o = o;
    this.#cfg = cfg;
    this.#log = o.logger.child({ component: 'outbound' });
    const opts: SMTPServerOptions = {
      name: o.hostname,
      banner: 'mailgate outbound',
      size: cfg.max_message_bytes,
      // Replies carry the next hop's (or our own) enhanced codes; smtp-server must not add its own.
      hideENHANCEDSTATUSCODES: true,
      hideDSN: true,
      hideSTARTTLS: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      authOptional: true,
      disableReverseLookup: true,
      logger: false,
      onConnect: (s, cb) => cb(this.#allowed(s) ? undefined : this.#refuse(s)),
      onMailFrom: (a, s, cb) =>
        this.#mail(a.address, (a.args || {}) as Record<string, string | true>, s).then(
          () => cb(),
          (e: Error) => cb(e),
        ),
      onRcptTo: (a, s, cb) =>
        this.#rcpt(a.address, s).then(
          () => cb(),
          (e: Error) => cb(e),
        ),
      onData: (stream, s, cb) =>
        this.#data(stream, s).then(
          (msg) => cb(null, msg),
          (e: Error) => cb(e),
        ),
      onClose: (s) => {
        const leg = this.#legs.get(s.id);
        this.#legs.delete(s.id);
        leg?.link?.quit();
      },
    };
    this.#smtp = new Server(opts);
    this.#smtp.on('error', (err: Error) => this.#log.debug({ err: err.message }, 'smtp-server error'));
  }

  get port(): number {
    return this.#port;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = (this.#smtp as unknown as { server: net.Server }).server;
      server.once('error', reject);
      this.#smtp.listen(this.#cfg.listen.port, this.#cfg.listen.host, () => {
        server.off('error', reject);
        const a = server.address();
        this.#port = typeof a === 'object' && a ? a.port : this.#cfg.listen.port;
        this.#log.info(
          { listen: `${this.#cfg.listen.host}:${this.#port}`, next_hop: `${this.#cfg.next_hop.host}:${this.#cfg.next_hop.port}` },
          'outbound listener up',
        );
        resolve(this.#port);
      });
    });
  }

  close(): Promise<void> {
    for (const leg of this.#legs.values()) leg.link?.close();
    this.#legs.clear();
    return new Promise((resolve) => this.#smtp.close(() => resolve()));
  }

  #allowed(s: SMTPServerSession): boolean {
    const ip = unmapped(s.remoteAddress);
    const nets = this.#o.config().outbound?.relay_networks ?? [];
    return nets.length > 0 && ipInList(ip, nets);
  }

  #refuse(s: SMTPServerSession): Error {
    countBackscatter('outbound-refused-client');
    this.#log.warn({ client: s.remoteAddress }, 'outbound listener: client not in relay_networks');
    return smtpError(554, '5.7.1', `Relay access denied: [${unmapped(s.remoteAddress)}] is not in backscatter.outbound.relay_networks`);
  }

  async #link(s: SMTPServerSession): Promise<BackendSession> {
    let leg = this.#legs.get(s.id);
    if (!leg) this.#legs.set(s.id, (leg = {}));
    if (leg.link?.alive) {
      if (leg.link.inTransaction) await leg.link.rset();
      return leg.link;
    }
    const hop = this.#cfg.next_hop;
    try {
      leg.link = await BackendSession.open({
        host: hop.host,
        port: hop.port,
        helo: hop.helo ?? this.#o.hostname,
        connectTimeoutMs: hop.connect_timeout_ms,
        commandTimeoutMs: hop.command_timeout_ms,
        dataTimeoutMs: hop.data_timeout_ms,
      });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'outbound: next hop unavailable');
      throw smtpError(451, '4.4.1', 'Next hop unavailable, try again later');
    }
    return leg.link;
  }

  async #mail(from: string, args: Record<string, string | true>, s: SMTPServerSession): Promise<void> {
    const link = await this.#link(s);
    const cfg = this.#o.config();
    const ring = keyringOf(cfg);
    // Only our own senders are signed: bounces to them come back to us. <> stays <>.
    const sign = from !== '' && (cfg.outbound?.sign ?? false) && ring !== undefined && this.#o.domains().has(domainOf(from));
    const sender = sign && ring ? batvSign(from, ring, this.#o.now()) : from;
    const params: string[] = [];
    for (const [k, v] of Object.entries(args)) {
      const key = k.toUpperCase();
      // Parameters the next hop advertised (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8).
      if (key === 'SIZE' && link.has('SIZE')) params.push(`SIZE=${String(v)}`);
      else if (key === 'BODY' && link.has('8BITMIME')) params.push(`BODY=${String(v)}`);
      else if (key === 'SMTPUTF8' && link.has('SMTPUTF8')) params.push('SMTPUTF8');
    }
    const r = await link.mail(sender, params);
    if (r.code !== 250) throw relayed(r);
    const leg = this.#legs.get(s.id);
    if (leg) {
      leg.from = from;
      leg.signed = sign;
    }
  }

  async #rcpt(to: string, s: SMTPServerSession): Promise<void> {
    const link = this.#legs.get(s.id)?.link;
    if (!link?.alive) throw smtpError(451, '4.4.1', 'Next hop connection lost, try again later');
    const r = await link.rcpt(to);
    if (r.code !== 250 && r.code !== 251) throw relayed(r);
  }

  async #data(stream: Readable, s: SMTPServerSession): Promise<string> {
    const leg = this.#legs.get(s.id);
    const link = leg?.link;
    if (!leg || !link?.alive) {
      stream.resume();
      await new Promise((r) => stream.once('end', r));
      throw smtpError(451, '4.4.1', 'Next hop connection lost, try again later');
    }
    const tap = new HeaderTap(this.#cfg.max_message_bytes);
    stream.pipe(tap);
    let r: BackendReply;
    try {
      r = await link.data(tap);
    } catch (err) {
      // Never leave a half-sent message at the next hop: drop the connection before the final dot.
      link.close();
      leg.link = undefined;
      stream.unpipe(tap);
      stream.resume();
      if ((err as { code?: string }).code === 'SIZE') throw smtpError(552, '5.3.4', 'Message too big');
      this.#log.warn({ err: (err as Error).message }, 'outbound: next hop failed during DATA');
      throw smtpError(451, '4.4.1', 'Next hop failed during DATA, try again later');
    }
    const messageId = headerValue(tap.header, 'message-id');
    const mid = messageId ? messageId.trim().replace(/^<|>$/g, '') : '';
    if (r.code === 250 && mid) await this.#o.record.record(mid, this.#o.now());
    if (r.code === 250) {
      countBackscatter('outbound-relayed');
      if (leg.signed) countBackscatter('outbound-signed');
    }
    this.#log.info(
      { from: leg.from, signed: leg.signed ?? false, rcpts: s.envelope.rcptTo.map((t) => t.address), message_id: mid, reply: `${r.code} ${replyText(r)}` },
      'outbound message',
    );
    if (r.code !== 250) throw relayed(r);
    return `${r.enhanced || '2.0.0'} ${replyText(r)}`;
  }
}

/** Starts the listener when `backscatter.outbound` is configured; undefined otherwise. */
export async function startOutboundListener(o: OutboundListenerOptions): Promise<OutboundListener | undefined> {
  if (!o.config().outbound) return undefined;
  const { SMTPServer } = await import('smtp-server');
  const l = new OutboundListener(o, SMTPServer);
  await l.listen();
  return l;
}

/** The record a running backscatter check writes to, if the gateway runs one. */
function recordOf(checks: readonly Check[]): OutboundRecord | undefined {
  for (const c of checks) {
    const r = (c as { record?: unknown }).record;
    if (c.name === 'backscatter' && r && typeof (r as OutboundRecord).seen === 'function') return r as OutboundRecord;
  }
  return undefined;
}

/**
 * For src/gateway.ts: starts the outbound listener when `backscatter.outbound` is configured,
 * writing to the same record the gateway's backscatter check reads.
 */
export function startGatewayOutbound(
  runtime: { config: Config; domains: ReadonlySet<string>; logger: Logger },
  deps: { now: () => number; store?: SharedStore | undefined },
  checks: readonly Check[],
): Promise<OutboundListener | undefined> {
  const cfg = runtime.config.backscatter;
  if (!cfg.outbound) return Promise.resolve(undefined);
  const record = recordOf(checks) ?? createOutboundRecord(deps.store, cfg.record.ttl, cfg.record.max_entries);
  return startOutboundListener({
    config: () => runtime.config.backscatter,
    domains: () => runtime.domains,
    hostname: runtime.config.hostname,
    record,
    now: deps.now,
    logger: runtime.logger,
  });
}
