// One DNS question to one server: UDP first, and TCP when the UDP reply is truncated
// (RFC 1035 4.2.1, RFC 7766 section 5). Timing is the caller's: the exchange runs until it gets a
// reply, fails, or the signal aborts; all sockets are closed when it settles.
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { createRequire } from 'node:module';
import type * as DnsPacket from 'dns-packet';
import type { DecodedPacket, RecordType } from 'dns-packet';
import type { ServerAddress } from './servers.ts';

/** Advertised EDNS(0) UDP payload size (RFC 6891); 1232 avoids IP fragmentation (DNS flag day 2020). */
const EDNS_UDP_SIZE = 1232;

// require, not import: a CommonJS package imported from ESM keeps its source twice (the ESM
// loader's copy for the export lexer, the CommonJS wrapper's) plus a module record (bench/HISTORY.md)
const packet = createRequire(import.meta.url)('dns-packet') as typeof DnsPacket;
const MAX_TCP_REPLY = 65_535;

export interface Question {
  /** Name without the trailing dot. */
  name: string;
  type: RecordType;
}

/** dns-packet decodes the RCODE but its types do not declare it. */
export type Reply = DecodedPacket & { rcode?: string };

export class TransportError extends Error {
  readonly code: 'ECONNREFUSED' | 'EBADRESP' | 'ENETWORK';
  constructor(code: 'ECONNREFUSED' | 'EBADRESP' | 'ENETWORK', message: string) {
    super(message);
    this.code = code;
  }
}

function encodeQuery(q: Question, id: number): Buffer {
  return packet.encode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ name: q.name, type: q.type, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
}

/** A reply answers our query if id, QR bit and the echoed question match (RFC 5452 section 4). */
function matches(reply: Reply, q: Question, id: number): boolean {
  if (reply.id !== id || reply.type !== 'response') return false;
  const rq = reply.questions?.[0];
  // Some servers omit the question in error replies (FORMERR); accept those on id alone.
  if (!rq) return reply.rcode !== 'NOERROR' && reply.rcode !== 'NXDOMAIN';
  return rq.type === q.type && rq.name.toLowerCase() === q.name.toLowerCase();
}

function tryDecode(buf: Buffer): Reply | undefined {
  try {
    return packet.decode(buf) as Reply;
  } catch {
    return undefined;
  }
}

/** Sends `q` to `server` and resolves with the matching reply (over TCP if UDP was truncated). */
export async function exchange(server: ServerAddress, q: Question, signal: AbortSignal, opts: { tcpOnly?: boolean } = {}): Promise<Reply> {
  if (!opts.tcpOnly) {
    const udp = await exchangeUdp(server, q, signal);
    if (!udp.flag_tc) return udp;
  }
  return exchangeTcp(server, q, signal);
}

function exchangeUdp(server: ServerAddress, q: Question, signal: AbortSignal): Promise<Reply> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const id = randomInt(0, 65536);
    const sock = createSocket(server.family === 6 ? 'udp6' : 'udp4');
    const finish = (err: Error | null, reply?: Reply): void => {
      signal.removeEventListener('abort', onAbort);
      sock.removeAllListeners('message');
      sock.on('error', () => {});
      try {
        sock.close();
      } catch {
        // already closed
      }
      if (err) reject(err);
      else resolve(reply as Reply);
    };
    const onAbort = (): void => finish(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      finish(new TransportError(err.code === 'ECONNREFUSED' ? 'ECONNREFUSED' : 'ENETWORK', `UDP ${server.host}:${server.port}: ${err.message}`));
    });
    sock.on('message', (msg, rinfo) => {
      // Ignore anything that is not from the server we asked or does not answer our question:
      // a spoofed or stray datagram must not end the exchange (RFC 5452 section 9.1).
      if (rinfo.port !== server.port || rinfo.address.replace(/^::ffff:/, '') !== server.host.replace(/%.*$/, '')) return;
      const reply = tryDecode(msg);
      if (!reply || !matches(reply, q, id)) return;
      finish(null, reply);
    });
    sock.send(encodeQuery(q, id), server.port, server.host, (err) => {
      if (err) finish(new TransportError('ENETWORK', `UDP ${server.host}:${server.port}: ${err.message}`));
    });
  });
}

function exchangeTcp(server: ServerAddress, q: Question, signal: AbortSignal): Promise<Reply> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const id = randomInt(0, 65536);
    const sock = connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | null, reply?: Reply): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply as Reply);
    };
    const onAbort = (): void => finish(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    sock.on('connect', () => {
      const query = encodeQuery(q, id);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > MAX_TCP_REPLY + 2) return finish(new TransportError('EBADRESP', 'TCP reply too long'));
      if (buf.length < 2) return;
      const need = buf.readUInt16BE(0);
      if (buf.length < need + 2) return;
      const reply = tryDecode(buf.subarray(2, need + 2));
      if (!reply || !matches(reply, q, id)) return finish(new TransportError('EBADRESP', `TCP ${server.host}:${server.port}: reply does not match the query`));
      finish(null, reply);
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      finish(new TransportError(err.code === 'ECONNREFUSED' ? 'ECONNREFUSED' : 'ENETWORK', `TCP ${server.host}:${server.port}: ${err.message}`));
    });
    sock.on('close', () => finish(new TransportError('EBADRESP', `TCP ${server.host}:${server.port}: connection closed before the reply`)));
  });
}
