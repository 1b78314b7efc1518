// IP addresses and CIDR blocks, in one module for the whole gateway: one canonical text form per
// address (so equality works across spellings), networks of an address, reverse-lookup names and
// list matching. Parsing and arithmetic come from ipaddr.js (a well-kept library already in the
// tree through mailauth); list matching is our own (IpSet: a set of networks per prefix length).
import { isIP } from 'node:net';
import { createRequire } from 'node:module';
import type * as Ipaddr from 'ipaddr.js';

// require, not import: a CommonJS package imported from ESM keeps its source twice (bench/HISTORY.md)
const ipaddr = createRequire(import.meta.url)('ipaddr.js') as typeof Ipaddr;

/**
 * Canonical form of an address, or undefined when `text` is not one. Accepts SMTP address
 * literals (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, RFC 5321 §4.1.3), strips an IPv6 zone id,
 * lower-cases and compresses IPv6 (RFC 5952) and unwraps IPv4-mapped IPv6 (`::ffff:192.0.2.1`).
 */
export function normalizeIp(text: string): string | undefined {
  let v = text.trim();
  if (v.startsWith('[') && v.endsWith(']')) v = v.slice(1, -1);
  if (v.length > 5 && v.slice(0, 5).toLowerCase() === 'ipv6:') v = v.slice(5);
  const zone = v.indexOf('%');
  if (zone >= 0) v = v.slice(0, zone);
  // node:net is strict about forms (no octal or short IPv4 like ipaddr.parse accepts).
  const family = isIP(v);
  if (family === 4) return v;
  if (family !== 6) return undefined;
  const a = ipaddr.IPv6.parse(v);
  return a.isIPv4MappedAddress() ? a.toIPv4Address().toString() : a.toRFC5952String();
}

/** Network of an address: IPv4 /prefix4 (24), IPv6 /prefix6 (64), as `addr/len`. */
export function networkOf(ip: string, prefix4 = 24, prefix6 = 64): string | undefined {
  const a = normalizeIp(ip);
  if (a === undefined) return undefined;
  const addr = ipaddr.parse(a);
  const len = addr.kind() === 'ipv4' ? prefix4 : prefix6;
  const net = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${a}/${len}`) : ipaddr.IPv6.networkAddressFromCIDR(`${a}/${len}`);
  // Uncompressed groups (2001:db8:0:0:0:0:0:0/64): the form limit keys in Redis have always used.
  return `${net.kind() === 'ipv6' ? (net as Ipaddr.IPv6).toNormalizedString() : net.toString()}/${len}`;
}

export function ipFamily(ip: string): 4 | 6 | 0 {
  const f = isIP(ip);
  return f === 4 || f === 6 ? f : 0;
}

export interface Cidr {
  address: string;
  prefix: number;
  family: 4 | 6;
}

/** Parses `192.0.2.0/24`, `2001:db8::/32` or a single address (a /32 or /128). */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const addrText = slash >= 0 ? text.slice(0, slash) : text;
  const address = normalizeIp(addrText);
  if (address === undefined) return undefined;
  const family = ipFamily(address);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  if (slash < 0) return { address, prefix: max, family };
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family };
}

/**
 * The value of a dotted-quad IPv4 address in node:net's strict form (four decimal octets, no
 * leading zeros: what `isIP` accepts), or -1. The fast path of IpSet.has: the client address of
 * every connection is in this form, and the shipped rules test it against CIDR lists at each stage.
 */
function ipv4Value(s: string): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return -1; // a leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

/** The 32 hex digits of a (canonical) IPv6 address. */
function ipv6Hex(address: string): string {
  let hex = '';
  for (const part of ipaddr.IPv6.parse(address).parts) hex += part.toString(16).padStart(4, '0');
  return hex;
}

/** The first `prefix` bits of a 32-hex-digit IPv6 value, as hex (the last digit masked). */
function ipv6Network(hex: string, prefix: number): string {
  const full = prefix >> 2;
  const rest = prefix & 3;
  if (rest === 0) return hex.slice(0, full);
  return hex.slice(0, full) + (Number.parseInt(hex[full] as string, 16) & ((0xf << (4 - rest)) & 0xf)).toString(16);
}

/**
 * A set of addresses and networks; `has` takes any spelling of an address. Kept as one set of
 * network values per prefix length, so a lookup is one hash probe per prefix length in the list
 * (a handful), with no allocation for an IPv4 address. (node:net's BlockList built a SocketAddress
 * per `check`: 75 µs per message through the shipped rules' CIDR conditions.)
 */
export class IpSet {
  /** prefix length → networks (the address value with the host bits cleared). */
  readonly #v4 = new Map<number, Set<number>>();
  readonly #v6 = new Map<number, Set<string>>();
  #size = 0;

  /** Adds an address or CIDR; false when `text` is neither. */
  add(text: string): boolean {
    const c = parseCidr(text);
    if (!c) return false;
    if (c.family === 4) {
      const net = c.prefix === 0 ? 0 : ipv4Value(c.address) - (ipv4Value(c.address) % 2 ** (32 - c.prefix));
      let nets = this.#v4.get(c.prefix);
      if (!nets) this.#v4.set(c.prefix, (nets = new Set()));
      nets.add(net);
    } else {
      let nets = this.#v6.get(c.prefix);
      if (!nets) this.#v6.set(c.prefix, (nets = new Set()));
      nets.add(ipv6Network(ipv6Hex(c.address), c.prefix));
    }
    this.#size++;
    return true;
  }

  has(ip: string): boolean {
    if (this.#size === 0) return false;
    let v = ipv4Value(ip);
    if (v < 0) {
      const n = normalizeIp(ip);
      if (n === undefined) return false;
      if (ipFamily(n) === 6) {
        const hex = ipv6Hex(n);
        for (const [prefix, nets] of this.#v6) if (nets.has(ipv6Network(hex, prefix))) return true;
        return false;
      }
      v = ipv4Value(n);
    }
    for (const [prefix, nets] of this.#v4) if (nets.has(prefix === 0 ? 0 : v - (v % 2 ** (32 - prefix)))) return true;
    if (this.#v6.size === 0) return false;
    // An IPv4 address is also its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so IPv6 networks that
    // contain ::ffff:0:0/96 (`::/0`, say) match it, as they did under node:net's BlockList.
    const hex = `00000000000000000000ffff${v.toString(16).padStart(8, '0')}`;
    for (const [prefix, nets] of this.#v6) if (nets.has(ipv6Network(hex, prefix))) return true;
    return false;
  }

  get size(): number {
    return this.#size;
  }
}

/** Private, loopback, link-local and other non-global ranges: never sent to public DNSBLs. */
const nonGlobal = new IpSet();
for (const c of [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/3',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
  '2001:db8::/32',
  'ff00::/8',
]) {
  nonGlobal.add(c);
}

export function isNonGlobalIp(ip: string): boolean {
  return nonGlobal.has(ip);
}

/**
 * The reverse-lookup name of an address without the suffix: `2.0.0.192` for 192.0.2.2 and the
 * 32 nibbles for IPv6 (RFC 1035 §3.5, RFC 3596 §2.5). DNSBLs use the same form before the zone.
 */
export function reverseName(ip: string): string | undefined {
  const n = normalizeIp(ip);
  if (n === undefined) return undefined;
  const bytes = ipaddr.parse(n).toByteArray();
  if (bytes.length === 4) return bytes.reverse().join('.');
  const nibbles: string[] = [];
  for (const b of bytes) nibbles.push((b >> 4).toString(16), (b & 15).toString(16));
  return nibbles.reverse().join('.');
}

export function ptrName(ip: string): string | undefined {
  const r = reverseName(ip);
  if (r === undefined) return undefined;
  return `${r}.${ipFamily(normalizeIp(ip) ?? '') === 4 ? 'in-addr.arpa' : 'ip6.arpa'}`;
}

const listCache = new WeakMap<readonly string[], IpSet>();

/** Whether `ip` is in a list of addresses and CIDRs (the list is compiled once per array). */
export function ipInList(ip: string, entries: readonly string[]): boolean {
  let set = listCache.get(entries);
  if (!set) {
    set = new IpSet();
    for (const e of entries) set.add(e);
    listCache.set(entries, set);
  }
  return set.has(ip);
}
