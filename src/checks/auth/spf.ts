// SPF (RFC 7208) for the MAIL FROM identity and the HELO identity, with mailauth's evaluator and
// our resolver. The null sender is checked as postmaster@<HELO> (RFC 7208 section 2.4).
import { isIP } from 'node:net';
import { spf } from 'mailauth/lib/spf/index.js';
import type { DNSResolver } from 'mailauth';
import { SPF_RESULTS } from './auth-facts.ts';
import { formatAuthHeaderRow } from './mailauth-internals.ts';

export type SpfResult = (typeof SPF_RESULTS)[number];

export interface SpfInput {
  /** Client IP address. */
  ip: string;
  /** MAIL FROM address, "" for the null sender. */
  sender: string;
  /** HELO/EHLO name as sent. */
  helo: string;
}

export interface SpfOptions {
  resolver: (name: string, rrtype: string) => Promise<unknown[]>;
  /** Our host name, used in result comments. */
  mta: string;
  strict: boolean;
  /** Also evaluate the HELO identity. */
  checkHelo: boolean;
  /** Time limit for each evaluation (RFC 7208 4.6.4 suggests at least 20 s; temperror when exceeded). */
  maxElapsedTime: number;
}

export interface SpfOutcome {
  result: SpfResult;
  domain: string;
  identity: 'mailfrom' | 'helo';
  explanation: string;
  record: string;
  lookups: number;
  heloResult: SpfResult;
}

const asResult = (r: string): SpfResult => ((SPF_RESULTS as readonly string[]).includes(r) ? (r as SpfResult) : 'temperror');

/** A HELO name SPF can be checked for: a domain with at least one dot, not an address literal. */
export function heloIsDomain(helo: string): boolean {
  const h = helo.trim().replace(/\.$/, '');
  return h.includes('.') && !h.startsWith('[') && isIP(h) === 0 && /^[a-z0-9_.-]+$/i.test(h);
}

export async function checkSpf(input: SpfInput, opts: SpfOptions): Promise<SpfOutcome> {
  const base = {
    ip: input.ip,
    helo: input.helo,
    mta: opts.mta,
    strict: opts.strict,
    maxElapsedTime: opts.maxElapsedTime,
    resolver: opts.resolver as unknown as DNSResolver,
  };
  const nullSender = input.sender === '';
  const mailFrom = spf({ ...base, sender: nullSender ? '' : input.sender });
  // For the null sender the MAIL FROM check already is the HELO check.
  const helo =
    nullSender || !opts.checkHelo || !heloIsDomain(input.helo) ? undefined : spf({ ...base, sender: `postmaster@${input.helo.trim().replace(/\.$/, '')}` });
  const [m, h] = await Promise.all([mailFrom, helo]);
  const result = asResult(m.status.result);
  let heloResult: SpfResult = 'none';
  if (nullSender) heloResult = heloIsDomain(input.helo) ? result : 'none';
  else if (h) heloResult = asResult(h.status.result);
  return {
    result,
    domain: m.domain,
    identity: nullSender ? 'helo' : 'mailfrom',
    explanation: m.explanation ?? '',
    record: m.rr ?? '',
    lookups: m.lookups?.count ?? 0,
    heloResult,
  };
}

/** The comment mailauth writes, rebuilt from facts so the data stage can write the spf resinfo. */
function spfComment(result: string, sender: string, ip: string, mta: string, domain: string): string {
  switch (result) {
    case 'pass':
      return `${mta}: domain of ${sender} designates ${ip} as permitted sender`;
    case 'softfail':
      return `${mta}: domain of transitioning ${sender} does not designate ${ip} as permitted sender`;
    case 'fail':
      return `${mta}: domain of ${sender} does not designate ${ip} as permitted sender`;
    case 'neutral':
      return `${mta}: ${ip} is neither permitted nor denied by domain of ${sender}`;
    case 'none':
      return `${mta}: ${domain} does not designate permitted sender hosts`;
    case 'permerror':
      return `${mta}: permanent error in processing during lookup of ${sender}`;
    default:
      return `${mta}: error in processing during lookup of ${sender}`;
  }
}

/** The spf resinfo of Authentication-Results (RFC 8601 2.7.2): smtp.mailfrom, or smtp.helo for the null sender. */
export function spfResinfo(a: {
  result: string;
  identity: string;
  sender: string;
  helo: string;
  ip: string;
  domain: string;
  mta: string;
  strict: boolean;
}): string {
  const sender = a.identity === 'helo' ? `postmaster@${a.helo}` : a.sender;
  const smtp = a.identity === 'helo' ? { helo: a.helo } : { mailfrom: a.sender };
  return formatAuthHeaderRow('spf', { result: a.result, comment: spfComment(a.result, sender, a.ip, a.mta, a.domain), smtp }, { strict: a.strict });
}
