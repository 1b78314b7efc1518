// A small authoritative DNS server for tests: serves zone data given as plain objects over UDP and
// TCP on 127.0.0.1 (port 0 = any free port), records the queries it got, and can be told to never
// answer (timeouts), answer SERVFAIL, or truncate every UDP reply (forces the TCP fallback).
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import * as packet from 'dns-packet';
import type { Answer, DecodedPacket, Packet, RecordType } from 'dns-packet';

/** Records of one name. TXT entries: a string (split into 255-octet character-strings), or the explicit list of strings. */
export interface NameData {
  A?: string[];
  AAAA?: string[];
  /** A string is one record (split every 255 bytes); a string[] or Buffer[] is one record's character-strings. */
  TXT?: Array<string | Buffer | Array<string | Buffer>>;
  MX?: Array<{ priority: number; exchange: string }>;
  CNAME?: string;
  PTR?: string[];
  NS?: string[];
  SRV?: Array<{ priority: number; weight: number; port: number; target: string }>;
  /** TTL for this name's records (default: the server's `ttl`). */
  ttl?: number;
  /** Never answer queries for record types this name has no data for (the openspf suite's TIMEOUT). */
  timeout?: boolean;
  /** Answer SERVFAIL for every query for this name. */
  servfail?: boolean;
}

/** Name (case-insensitive, no trailing dot; "*.example.com" is a wildcard) → records. */
export type Zone = Record<string, NameData>;

export interface DnsServerOptions {
  zone?: Zone;
  /** Default TTL of answers. Default 300. */
  ttl?: number;
  /** SOA sent with NXDOMAIN/NODATA (RFC 2308), or false for none. Default { ttl: 60, minimum: 60 }. */
  soa?: { ttl: number; minimum: number } | false;
  /** 'answer' (default) or 'silent': receive queries but never reply. */
  mode?: 'answer' | 'silent';
  /** Set TC on every UDP reply and send no records, so clients must retry over TCP. */
  truncateUdp?: boolean;
  /** Delay every reply by this many milliseconds. */
  delayMs?: number;
}

export interface QueryLogEntry {
  name: string;
  type: string;
  proto: 'udp' | 'tcp';
}

export interface TestDnsServer {
  /** "127.0.0.1:port", for the resolver's `servers`. */
  readonly address: string;
  readonly port: number;
  /** Every query received, in order. */
  readonly queries: QueryLogEntry[];
  zone: Zone;
  mode: 'answer' | 'silent';
  truncateUdp: boolean;
  delayMs: number;
  close(): Promise<void>;
  /** Lets the process exit while the server is still open (for a server shared by a whole test file). */
  unref(): void;
}

const norm = (n: string): string => n.toLowerCase().replace(/\.$/, '');

/** Splits a TXT string into character-strings of at most 255 octets (RFC 1035 3.3.14). */
function splitTxt(value: string | Buffer): Buffer[] {
  // Strings are written byte for byte (Latin-1 for code points < 256) so a test can put raw
  // octets in a record; anything wider is UTF-8.
  const buf = Buffer.isBuffer(value) ? value : /^[\u0000-\u00ff]*$/.test(value) ? Buffer.from(value, 'latin1') : Buffer.from(value, 'utf8');
  if (buf.length === 0) return [buf];
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 255) out.push(buf.subarray(i, i + 255));
  return out;
}

function toBuf(v: string | Buffer): Buffer {
  return Buffer.isBuffer(v) ? v : /^[\u0000-\u00ff]*$/.test(v) ? Buffer.from(v, 'latin1') : Buffer.from(v, 'utf8');
}

function recordsOf(name: string, data: NameData, type: string, ttl: number): Answer[] {
  const t = data.ttl ?? ttl;
  switch (type) {
    case 'A':
      return (data.A ?? []).map((d) => ({ type: 'A', name, ttl: t, data: d }));
    case 'AAAA':
      return (data.AAAA ?? []).map((d) => ({ type: 'AAAA', name, ttl: t, data: d }));
    case 'TXT':
      return (data.TXT ?? []).map((d) => ({ type: 'TXT', name, ttl: t, data: Array.isArray(d) ? d.map(toBuf) : splitTxt(d) }));
    case 'MX':
      return (data.MX ?? []).map((d) => ({ type: 'MX', name, ttl: t, data: { preference: d.priority, exchange: d.exchange } }));
    case 'PTR':
      return (data.PTR ?? []).map((d) => ({ type: 'PTR', name, ttl: t, data: d }));
    case 'NS':
      return (data.NS ?? []).map((d) => ({ type: 'NS', name, ttl: t, data: d }));
    case 'SRV':
      return (data.SRV ?? []).map((d) => ({ type: 'SRV', name, ttl: t, data: d }));
    case 'CNAME':
      return data.CNAME !== undefined ? [{ type: 'CNAME', name, ttl: t, data: data.CNAME }] : [];
    default:
      return [];
  }
}

interface Lookup {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL';
  answers: Answer[];
  /** No reply at all (a TIMEOUT name, or the server is silent). */
  drop?: boolean;
}

export class ZoneAnswerer {
  zone: Zone;
  ttl: number;

  constructor(zone: Zone, ttl: number) {
    this.zone = zone;
    this.ttl = ttl;
  }

  #find(name: string): { key: string; data: NameData } | undefined {
    const n = norm(name);
    for (const [k, v] of Object.entries(this.zone)) if (norm(k) === n) return { key: n, data: v };
    // Wildcard (RFC 4592), only when no closer name or descendant exists.
    if (this.#hasDescendant(n)) return undefined;
    const labels = n.split('.');
    for (let i = 1; i < labels.length; i++) {
      const wild = `*.${labels.slice(i).join('.')}`;
      for (const [k, v] of Object.entries(this.zone)) if (norm(k) === wild) return { key: n, data: v };
    }
    return undefined;
  }

  #hasDescendant(n: string): boolean {
    return Object.keys(this.zone).some((k) => norm(k).endsWith(`.${n}`));
  }

  answer(qname: string, qtype: string): Lookup {
    const answers: Answer[] = [];
    let name = qname.replace(/\.$/, '');
    for (let hop = 0; hop < 10; hop++) {
      const found = this.#find(name);
      if (!found) {
        if (hop > 0) return { rcode: 'NOERROR', answers }; // chain leaves the zone data
        return { rcode: this.#hasDescendant(norm(name)) ? 'NOERROR' : 'NXDOMAIN', answers };
      }
      const { data } = found;
      if (data.servfail) return { rcode: 'SERVFAIL', answers: [] };
      const own = recordsOf(name, data, qtype, this.ttl);
      if (own.length > 0) return { rcode: 'NOERROR', answers: [...answers, ...own] };
      if (data.CNAME !== undefined && qtype !== 'CNAME') {
        answers.push(...recordsOf(name, data, 'CNAME', this.ttl));
        name = data.CNAME.replace(/\.$/, '');
        continue;
      }
      if (data.timeout) return { rcode: 'NOERROR', answers: [], drop: true };
      return { rcode: 'NOERROR', answers };
    }
    return { rcode: 'SERVFAIL', answers: [] };
  }
}

const RCODE_BITS = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

export async function startDnsServer(opts: DnsServerOptions = {}): Promise<TestDnsServer> {
  const answerer = new ZoneAnswerer(opts.zone ?? {}, opts.ttl ?? 300);
  const soaOpt = opts.soa === undefined ? { ttl: 60, minimum: 60 } : opts.soa;
  const queries: QueryLogEntry[] = [];

  const build = (query: DecodedPacket, proto: 'udp' | 'tcp', state: TestDnsServer): Buffer | undefined => {
    const q = query.questions?.[0];
    if (!q) return undefined;
    queries.push({ name: q.name, type: q.type, proto });
    if (state.mode === 'silent') return undefined;
    const res = answerer.answer(q.name, q.type);
    if (res.drop) return undefined;
    const authorities: Answer[] = [];
    if (soaOpt && res.answers.length === 0 && res.rcode !== 'SERVFAIL') {
      const labels = q.name.replace(/\.$/, '').split('.');
      const apex = labels.slice(-2).join('.');
      authorities.push({
        type: 'SOA',
        name: apex,
        ttl: soaOpt.ttl,
        data: { mname: `ns.${apex}`, rname: `hostmaster.${apex}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: soaOpt.minimum },
      });
    }
    const truncated = proto === 'udp' && state.truncateUdp;
    const reply: Packet = {
      type: 'response',
      id: query.id ?? 0,
      flags:
        packet.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & packet.RECURSION_DESIRED) | RCODE_BITS[res.rcode] | (truncated ? packet.TRUNCATED_RESPONSE : 0),
      questions: [{ name: q.name, type: q.type as RecordType, class: 'IN' }],
      answers: truncated ? [] : res.answers,
      authorities: truncated ? [] : authorities,
    };
    let buf = packet.encode(reply);
    // Without EDNS a UDP reply is at most 512 octets (RFC 1035 4.2.1); with it, the advertised size.
    const opt = (query.additionals ?? []).find((a) => a.type === 'OPT');
    const limit = opt && 'udpPayloadSize' in opt ? Math.max(512, opt.udpPayloadSize) : 512;
    if (proto === 'udp' && buf.length > limit) {
      buf = packet.encode({ ...reply, answers: [], authorities: [], flags: (reply.flags ?? 0) | packet.TRUNCATED_RESPONSE });
    }
    return buf;
  };

  const tcpSockets = new Set<Socket>();
  let closed = false;
  const onTcp = (sock: Socket): void => {
    tcpSockets.add(sock);
    sock.on('close', () => tcpSockets.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < len + 2) break;
        const msg = buf.subarray(2, len + 2);
        buf = buf.subarray(len + 2);
        let query: DecodedPacket;
        try {
          query = packet.decode(msg);
        } catch {
          continue;
        }
        const out = build(query, 'tcp', state);
        if (!out) continue;
        const len2 = Buffer.alloc(2);
        len2.writeUInt16BE(out.length);
        const send = (): void => {
          if (!sock.destroyed) sock.write(Buffer.concat([len2, out]));
        };
        if (state.delayMs > 0) setTimeout(send, state.delayMs);
        else send();
      }
    });
  };

  // UDP and TCP on the same port number, so one "127.0.0.1:port" serves both. The port UDP gets
  // may be busy for TCP (an ephemeral client port): then both are closed and another is tried.
  let udp: UdpSocket | undefined;
  let tcp: Server | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 20 && !tcp; attempt++) {
    const u = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.bind(0, '127.0.0.1', () => resolve());
    });
    const p = (u.address() as AddressInfo).port;
    const t = createServer(onTcp);
    const ok = await new Promise<boolean>((resolve) => {
      t.once('error', () => resolve(false));
      t.listen(p, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      udp = u;
      tcp = t;
      port = p;
    } else {
      u.close();
      t.close();
    }
  }
  if (!udp || !tcp) throw new Error('test DNS server: no port free for both UDP and TCP');
  const udpSock = udp;
  const tcpServer = tcp;

  const state: TestDnsServer = {
    address: `127.0.0.1:${port}`,
    port,
    queries,
    get zone() {
      return answerer.zone;
    },
    set zone(z: Zone) {
      answerer.zone = z;
    },
    mode: opts.mode ?? 'answer',
    truncateUdp: opts.truncateUdp ?? false,
    delayMs: opts.delayMs ?? 0,
    unref: () => {
      udpSock.unref();
      tcpServer.unref();
    },
    close: async () => {
      closed = true;
      for (const s of tcpSockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udpSock.close(() => r())), new Promise<void>((r) => tcpServer.close(() => r()))]);
    },
  };

  udpSock.on('message', (msg, rinfo) => {
    let query: DecodedPacket;
    try {
      query = packet.decode(msg);
    } catch {
      return;
    }
    const out = build(query, 'udp', state);
    if (!out) return;
    const send = (): void => {
      if (closed) return;
      udpSock.send(out, rinfo.port, rinfo.address, () => {});
    };
    if (state.delayMs > 0) setTimeout(send, state.delayMs);
    else send();
  });

  return state;
}
