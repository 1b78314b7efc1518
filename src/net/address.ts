// Envelope address handling for the relay decision. smtp-server has already stripped source
// routes (RFC 5321 4.1.2: accepted and ignored) and refused addresses without exactly one "@";
// here we normalise the domain (case, trailing dot, IDN → A-label) and refuse the routing tricks
// a backend MTA might still honour (percent hack, bang paths) so nothing can be relayed through us.
import { domainToASCII } from 'node:url';

export interface ParsedAddress {
  local: string;
  /** Domain as A-label (punycode), lower case, no trailing dot. */
  domain: string;
  /** local@domain with the normalised domain, as we pass it to the backend. */
  address: string;
}

export type RecipientVerdict = { ok: true; parsed: ParsedAddress } | { ok: false; kind: 'syntax' | 'relay'; why: string; domain: string };

/**
 * Names domainToASCII returns unchanged: LDH-and-underscore labels whose last label starts with a
 * letter (so the WHATWG host parser cannot read the name as an IPv4 number, "0x7f.1"), with no
 * "%" (percent-decoded) and no "xn--" (punycode, validated). The pattern cannot backtrack: each
 * repetition ends at a dot.
 */
const PLAIN_NAME = /^(?:[a-z0-9_-]+\.)*[a-z][a-z0-9_-]*$/;

export function normalizeDomain(domain: string): string {
  const d = domain.trim().replace(/\.$/, '').toLowerCase();
  if (d.startsWith('[')) return d; // address literal: compared as is (never one of ours)
  // Most names are plain ASCII: skip the URL host parser (4–8 µs a call), it would change nothing.
  if (PLAIN_NAME.test(d) && !d.includes('xn--')) return d;
  const ascii = domainToASCII(d);
  return ascii === '' ? d : ascii;
}

export function parseAddress(addr: string): ParsedAddress | undefined {
  const at = addr.lastIndexOf('@');
  if (at <= 0 || at === addr.length - 1) return undefined;
  const local = addr.slice(0, at);
  const domain = normalizeDomain(addr.slice(at + 1));
  if (!domain) return undefined;
  return { local, domain, address: `${local}@${domain}` };
}

/** Decides whether a recipient is for one of our domains and free of routing tricks. */
export function checkRecipient(addr: string, domains: ReadonlySet<string>): RecipientVerdict {
  const p = parseAddress(addr);
  if (!p) return { ok: false, kind: 'syntax', why: 'expected user@domain', domain: '' };
  if (!domains.has(p.domain)) return { ok: false, kind: 'relay', why: 'not our domain', domain: p.domain };
  const local = p.local.startsWith('"') ? p.local.slice(1, -1) : p.local;
  // user%other@ours and other!user@ours are routing instructions older MTAs still follow
  // (Postfix allow_percent_hack, swap_bangpath); "a@b"@ours hides a second domain.
  if (/[%!@]/.test(local)) {
    return { ok: false, kind: 'relay', why: 'routing characters (%, ! or @) in the local part', domain: p.domain };
  }
  return { ok: true, parsed: p };
}
