// Turns the records of a DNS reply into the shapes node:dns `resolve(name, rrtype)` returns, which
// is what mailauth expects: A/AAAA/CNAME/PTR/NS as string[], TXT as string[][] (one array of
// character-strings per record, RFC 1035 3.3.14), MX as {exchange, priority}[], SRV as
// {name, port, priority, weight}[].
import type { Answer, RecordType } from 'dns-packet';

export const SUPPORTED_TYPES = ['A', 'AAAA', 'TXT', 'MX', 'CNAME', 'PTR', 'NS', 'SRV'] as const satisfies readonly RecordType[];
export type SupportedType = (typeof SUPPORTED_TYPES)[number];

export function isSupportedType(t: string): t is SupportedType {
  return (SUPPORTED_TYPES as readonly string[]).includes(t);
}

export interface MxRecord {
  exchange: string;
  priority: number;
}
export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}
export type ResolvedRecord = string | string[] | MxRecord | SrvRecord;

const stripDot = (n: string): string => (n.endsWith('.') && n.length > 1 ? n.slice(0, -1) : n);

/**
 * TXT character-strings are bytes (RFC 1035 3.3); they are decoded as UTF-8 when that is valid,
 * else as Latin-1 so that every byte survives as one character (SPF then sees the non-ASCII
 * octet and reports permerror, RFC 7208 section 3.1, instead of a silently replaced U+FFFD).
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
function txtString(b: Buffer | string): string {
  if (typeof b === 'string') return b;
  try {
    return strictUtf8.decode(b);
  } catch {
    return b.toString('latin1');
  }
}

/** Converts one answer record of type `type`, or undefined if it is not one. */
export function convertRecord(type: SupportedType, a: Answer): ResolvedRecord | undefined {
  if (a.type !== type) return undefined;
  switch (a.type) {
    case 'A':
    case 'AAAA':
      return a.data;
    case 'CNAME':
    case 'PTR':
    case 'NS':
      return stripDot(a.data);
    case 'TXT': {
      const d = a.data;
      return (Array.isArray(d) ? d : [d]).map(txtString);
    }
    case 'MX':
      return { exchange: stripDot(a.data.exchange), priority: a.data.preference ?? 0 };
    case 'SRV':
      return { name: stripDot(a.data.target), port: a.data.port, priority: a.data.priority ?? 0, weight: a.data.weight ?? 0 };
    default:
      return undefined;
  }
}

/** A deep enough copy that a caller sorting or editing the list can not change the cached one. */
export function cloneRecords(records: readonly unknown[]): unknown[] {
  return records.map((r) => (Array.isArray(r) ? [...(r as unknown[])] : typeof r === 'object' && r !== null ? { ...r } : r));
}
