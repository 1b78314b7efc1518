// PROXY protocol v1 (text) and v2 (binary) header reader, for listeners behind HAProxy or a TCP
// load balancer. smtp-server only reads v1, so mailgate reads the header itself before handing
// the socket over. Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
import net, { type Socket } from 'node:net';

export interface ProxyInfo {
  /** Real client address and port; undefined for v2 LOCAL / v1 UNKNOWN (health checks). */
  sourceAddress?: string;
  sourcePort?: number;
}

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

export class ProxyProtocolError extends Error {}

/**
 * Reads the header from `socket` (paused mode), puts back any bytes after it, and resolves with
 * the addresses. Rejects on garbage, on a missing header, or after `timeoutMs`.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyInfo> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, info?: ProxyInfo, rest?: Buffer) => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      if (rest && rest.length > 0) socket.unshift(rest);
      if (err) reject(err);
      else resolve(info ?? {});
    };
    const onEnd = () => done(new ProxyProtocolError('connection closed before PROXY header'));
    const timer = setTimeout(() => done(new ProxyProtocolError('timeout waiting for PROXY header')), timeoutMs);
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, chunk]);
        const r = parse(buf);
        if (r === 'more') continue;
        if (r instanceof Error) return done(r);
        return done(undefined, r.info, buf.subarray(r.length));
      }
    };
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    onReadable();
  });
}

type ParseResult = 'more' | Error | { info: ProxyInfo; length: number };

export function parse(buf: Buffer): ParseResult {
  const sigLen = Math.min(buf.length, V2_SIG.length);
  if (buf.subarray(0, sigLen).equals(V2_SIG.subarray(0, sigLen))) {
    if (buf.length < 16) return 'more';
    return parseV2(buf);
  }
  const prefix = Buffer.from('PROXY ');
  const pl = Math.min(buf.length, prefix.length);
  if (!buf.subarray(0, pl).equals(prefix.subarray(0, pl))) {
    return new ProxyProtocolError('expected a PROXY protocol header');
  }
  // v1 (spec 2.1): one line of at most 107 bytes including CRLF, printable US-ASCII fields
  // separated by single spaces. A CR or LF inside a field (a bare LF would end up in the Received
  // header we relay) or any other control byte is refused, as are addresses that are not IPs.
  const nl = buf.indexOf('\r\n');
  if (nl < 0) return buf.length >= V1_MAX ? new ProxyProtocolError('PROXY v1 header too long') : 'more';
  if (nl + 2 > V1_MAX) return new ProxyProtocolError('PROXY v1 header too long');
  for (let i = 0; i < nl; i++) {
    const b = buf[i] as number;
    if (b < 0x20 || b > 0x7e) return new ProxyProtocolError('bad PROXY v1 header: control or non-ASCII byte');
  }
  const line = buf.subarray(0, nl).toString('latin1');
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { info: {}, length: nl + 2 };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) {
    return new ProxyProtocolError(`bad PROXY v1 header: ${line.slice(0, 60)}`);
  }
  const family = parts[1] === 'TCP4' ? 4 : 6;
  const [, , src = '', dst = '', sport = '', dport = ''] = parts;
  if (net.isIP(src) !== family || net.isIP(dst) !== family) return new ProxyProtocolError('bad PROXY v1 address');
  const port = v1Port(sport);
  if (port === undefined || v1Port(dport) === undefined) return new ProxyProtocolError('bad PROXY v1 port');
  return { info: { sourceAddress: src, sourcePort: port }, length: nl + 2 };
}

/** A v1 port: 1–5 decimal digits, at most 65535. */
function v1Port(s: string): number | undefined {
  if (s.length === 0 || s.length > 5) return undefined;
  for (const c of s) if (c < '0' || c > '9') return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parseV2(buf: Buffer): ParseResult {
  const verCmd = buf[12] as number;
  const fam = buf[13] as number;
  const len = buf.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return new ProxyProtocolError('unsupported PROXY protocol version');
  if (buf.length < 16 + len) return 'more';
  const total = 16 + len;
  const cmd = verCmd & 0x0f;
  if (cmd === 0) return { info: {}, length: total }; // LOCAL: the proxy's own health check
  if (cmd !== 1) return new ProxyProtocolError('bad PROXY v2 command');
  const body = buf.subarray(16, total);
  // An address block too short for its family is a broken header, not "no address": with
  // TCP/UDP over IPv4 the block holds 12 bytes, over IPv6 36 (proxy-protocol.txt 2.2).
  if ((fam === 0x11 || fam === 0x12) && body.length < 12) return new ProxyProtocolError('PROXY v2 address block too short for IPv4');
  if ((fam === 0x21 || fam === 0x22) && body.length < 36) return new ProxyProtocolError('PROXY v2 address block too short for IPv6');
  if (fam === 0x11 && body.length >= 12) {
    const ip = `${body[0]}.${body[1]}.${body[2]}.${body[3]}`;
    return { info: { sourceAddress: ip, sourcePort: body.readUInt16BE(8) }, length: total };
  }
  if (fam === 0x21 && body.length >= 36) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return { info: { sourceAddress: compressV6(groups.join(':')), sourcePort: body.readUInt16BE(32) }, length: total };
  }
  // UNSPEC or unix sockets: no usable address.
  return { info: {}, length: total };
}

function compressV6(full: string): string {
  // Shortest form (RFC 5952): replace the longest run of zero groups with "::".
  const groups = full.split(':');
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  const head = groups.slice(0, best).join(':');
  const tail = groups.slice(best + bestLen).join(':');
  return `${head}::${tail}`;
}
