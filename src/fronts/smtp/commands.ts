// SMTP command lines taken apart (pure functions): the verb, MAIL FROM / RCPT TO paths with their
// ESMTP parameters (RFC 5321 4.1.2, RFC 1870, RFC 6152, RFC 6531), HELO names, and the reply
// format. Loops and anchored tests only: every input here comes from the client.
import { isIPv4, isIPv6 } from 'node:net';

/** ESMTP parameters of one command: names upper-cased, a bare keyword (or `KEY=`) is `true`. */
export type Params = Record<string, string | true>;

export type PathResult =
  | { ok: true; address: string; params: Params }
  /** Why the command is refused with 501 (the text of the reply). */
  | { ok: false; why: 'syntax' | string };

// Control characters have no place in a command argument: they would reach replies, log lines
// and Received fields (response splitting, header injection).
const CONTROL = /[\x00-\x1F\x7F-\x9F]/;
const CONTROL_GLOBAL = /[\x00-\x1F\x7F-\x9F]/g;
// ...nor do invisible formatting characters in an address (spoofed look-alikes).
const ADDRESS_UNSAFE = /[\x00-\x1F\x7F-\x9F\u200B\u2060\uFEFF]/;
const DOMAIN_CHARS = /^[a-zA-Z0-9\u0080-\uFFFF.-]+$/;

/** The verb of a command line, upper-cased (the text up to the first space). */
export function verbOf(line: string): string {
  const sp = line.indexOf(' ');
  return (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
}

/** The arguments of a command line, split on white space ("EHLO  a b" → ["a", "b"]). */
export function argsOf(line: string): string[] {
  const t = line.trim();
  const sp = t.search(/\s/);
  return sp < 0
    ? []
    : t
        .slice(sp + 1)
        .trim()
        .split(/\s+/);
}

/** A HELO/EHLO name we store (the syntax is left permissive: real clients send odd names). */
export function acceptableHelo(name: string): boolean {
  return name.length <= 300 && !CONTROL.test(name);
}

const HTTP_VERBS = new Set(['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT']);

/** "GET / HTTP/1.1" and friends: a browser made to talk to us (cross-protocol attack). */
export function isHttpRequest(line: string, verb: string): boolean {
  if (!HTTP_VERBS.has(verb) || line.charCodeAt(verb.length + 1) !== 0x2f /* / */) return false;
  const n = line.length;
  // ... HTTP/d.d at the end of the line.
  return (
    n >= verb.length + 11 &&
    line.slice(n - 9, n - 3).toUpperCase() === ' HTTP/' &&
    isDigit(line.charCodeAt(n - 3)) &&
    line[n - 2] === '.' &&
    isDigit(line.charCodeAt(n - 1))
  );
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** RFC 3461 xtext: "+XX" is a hex escape. */
function decodeXtext(v: string): string {
  if (!v.includes('+')) return v;
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i] as string;
    if (c === '+' && i + 2 < v.length && /^[0-9A-F]{2}$/.test(v.slice(i + 1, i + 3))) {
      out += String.fromCharCode(Number.parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else out += c;
  }
  return out;
}

/**
 * MAIL FROM:<path> [params] or RCPT TO:<path> [params]. `keyword` is "MAIL FROM" or "RCPT TO".
 * A source route ("<@relay:user@domain>") is accepted and dropped (RFC 5321 4.1.2, appendix C);
 * the domainless <postmaster> is accepted for RCPT (4.1.1.3); the empty path only for MAIL.
 * Duplicate parameters and value parameters without a value are refused (RFC 3461 4).
 */
export function parsePath(line: string, keyword: 'MAIL FROM' | 'RCPT TO', valueParams: readonly string[]): PathResult {
  const colon = line.indexOf(':');
  if (colon < 0 || line.slice(0, colon).trim().toUpperCase() !== keyword) return { ok: false, why: 'syntax' };
  const parts = line
    .slice(colon + 1)
    .trim()
    .split(/\s+/);
  let address = parts[0] ?? '';
  if (address.length < 2 || address[0] !== '<' || address[address.length - 1] !== '>') return { ok: false, why: 'syntax' };
  address = address.slice(1, -1);
  if (address.includes('<') || address.includes('>')) return { ok: false, why: 'syntax' };
  address = stripSourceRoute(address);
  const params: Params = {};
  let duplicate: string | undefined;
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i] as string;
    const eq = p.indexOf('=');
    const key = (eq < 0 ? p : p.slice(0, eq)).toUpperCase();
    if (key.trim() === '') continue;
    const raw = eq < 0 ? '' : p.slice(eq + 1);
    const value: string | true = raw === '' ? true : decodeXtext(raw);
    if (typeof value === 'string' && CONTROL.test(value)) return { ok: false, why: 'syntax' };
    if (key in params) duplicate = key;
    params[key] = value;
  }
  if (address !== '' && !validAddress(address, keyword === 'RCPT TO')) return { ok: false, why: 'syntax' };
  if (duplicate) return { ok: false, why: `Error: duplicate ${duplicate} parameter` };
  for (const k of valueParams) {
    const v = params[k];
    if (v !== undefined && typeof v !== 'string') return { ok: false, why: `Error: ${k} parameter requires a value` };
  }
  return { ok: true, address, params };
}

/** "@a,@b:user@domain" → "user@domain". */
function stripSourceRoute(address: string): string {
  if (address[0] !== '@') return address;
  const colon = address.indexOf(':');
  if (colon < 0) return address;
  const route = address.slice(0, colon).split(',');
  for (const hop of route) {
    if (hop.length < 2 || hop[0] !== '@' || /[\s,:@]/.test(hop.slice(1))) return address;
  }
  return address.slice(colon + 1);
}

/** A permissive mailbox check: one "@", no empty parts, no dot tricks, a plausible domain. */
function validAddress(address: string, rcpt: boolean): boolean {
  if (ADDRESS_UNSAFE.test(address)) return false;
  if (rcpt && address.toLowerCase() === 'postmaster') return true;
  const at = address.indexOf('@');
  if (at <= 0 || at !== address.lastIndexOf('@') || at === address.length - 1) return false;
  // RFC 5321 4.5.3.1.3: a path is at most 256 octets with its brackets.
  if (address.length > 253) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false;
  if (domain.startsWith('[') && domain.endsWith(']')) {
    // Address literal (RFC 5321 4.1.3): [IPv4] or [IPv6:...].
    const ip = domain.slice(1, -1);
    return ip.slice(0, 5).toUpperCase() === 'IPV6:' ? isIPv6(ip.slice(5)) : isIPv4(ip);
  }
  return (
    !domain.startsWith('.') && !domain.endsWith('.') && !domain.includes('..') && !domain.includes('.-') && !domain.includes('-.') && DOMAIN_CHARS.test(domain)
  );
}

/**
 * One reply as written: multi-line texts become multi-line replies, every line with the enhanced
 * code when there is one (RFC 2034 3); control characters in the text become spaces, so a value
 * quoted from the client can never split the reply.
 */
export function formatReply(code: number, enhanced: string, text: string): string {
  const prefix = enhanced ? ` ${enhanced} ` : ' ';
  if (!text.includes('\n')) return `${code}${prefix}${clean(text)}\r\n`;
  const lines = text.split('\n');
  let out = '';
  for (let i = 0; i < lines.length; i++) {
    out += `${code}${i < lines.length - 1 ? '-' : ' '}${enhanced ? `${enhanced} ` : ''}${clean(lines[i] as string)}\r\n`;
  }
  return out;
}

function clean(s: string): string {
  return CONTROL.test(s) ? s.replace(CONTROL_GLOBAL, ' ') : s;
}
