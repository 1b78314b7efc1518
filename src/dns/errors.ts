// DNS failures as node:dns-style errors (an Error with `code`), the shape mailauth and every check
// expect. A fresh error object is made for every caller: mailauth writes onto the errors it gets
// (err.spfResult), so a shared, cached error would leak one evaluation's verdict into another.

/** node:dns error codes this resolver produces. */
export const DNS_ERROR_CODES = [
  'ENOTFOUND', // NXDOMAIN (RFC 1035 4.1.1 RCODE 3)
  'ENODATA', // NOERROR with no records of the type asked for (RFC 2308 "NODATA")
  'ETIMEOUT', // no answer within the lookup's deadline
  'ESERVFAIL', // RCODE 2
  'EREFUSED', // RCODE 5
  'EFORMERR', // RCODE 1
  'ENOTIMP', // RCODE 4, or a record type this resolver does not decode
  'EBADNAME', // a name that can not be sent: empty label, label > 63 or name > 253 octets
  'EBADRESP', // a reply that could not be parsed or made no sense
  'ECONNREFUSED', // every server refused the connection (ICMP port unreachable, TCP RST)
] as const;
export type DnsErrorCode = (typeof DNS_ERROR_CODES)[number];

/** Codes that say nothing about the name, only that we could not find out: never a "no record". */
export const TEMPORARY_CODES: ReadonlySet<string> = new Set(['ETIMEOUT', 'ESERVFAIL', 'EREFUSED', 'EFORMERR', 'EBADRESP', 'ECONNREFUSED']);

const SYSCALL: Record<string, string> = {
  A: 'queryA',
  AAAA: 'queryAaaa',
  TXT: 'queryTxt',
  MX: 'queryMx',
  CNAME: 'queryCname',
  PTR: 'queryPtr',
  NS: 'queryNs',
  SRV: 'querySrv',
};

export class DnsError extends Error {
  readonly code: DnsErrorCode;
  readonly hostname: string;
  readonly syscall: string;
  readonly rrtype: string;
  constructor(code: DnsErrorCode, hostname: string, rrtype: string, detail?: string) {
    const syscall = SYSCALL[rrtype] ?? 'query';
    // NXDOMAIN and NODATA are answers, not bugs: skip the stack trace capture, which cost
    // ~50 µs per message in the bench profile (bench/HISTORY.md).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`${syscall} ${code} ${hostname}${detail ? ` (${detail})` : ''}`);
    Error.stackTraceLimit = limit;
    this.name = 'DnsError';
    this.code = code;
    this.hostname = hostname;
    this.syscall = syscall;
    this.rrtype = rrtype;
  }
}

export function isTemporary(err: unknown): boolean {
  return typeof err === 'object' && err !== null && TEMPORARY_CODES.has(String((err as { code?: unknown }).code));
}
