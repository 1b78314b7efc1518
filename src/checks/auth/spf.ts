// SPF (RFC 7208) for the MAIL FROM identity and the HELO identity, with mailauth's evaluator and
// our resolver. The null sender is checked as postmaster@<HELO> (RFC 7208 section 2.4). Results
// are remembered per (IP, domain) while the DNS answers they read are cached (spf-memo.ts).
import { isIP } from 'node:net';
import { spf } from 'mailauth/lib/spf/index.js';
import type { DNSResolver } from 'mailauth';
import { SPF_RESULTS } from './auth-facts.ts';
import { formatAuthHeaderRow } from './mailauth-internals.ts';
import { SpfMemo, type SpfEvaluation } from './spf-memo.ts';

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
  /** Remembered results (absent: every evaluation runs). */
  memo?: SpfMemo | undefined;
}

export interface SpfOutcome {
  result: SpfResult;
  domain: string;
  identity: 'mailfrom' | 'helo';
  explanation: string;
  record: string;
  lookups: number;
  heloResult: SpfResult;
  /** DNS questions the evaluations asked (remembered ones count what they asked then). */
  dnsLookups: number;
}

const asResult = (r: string): SpfResult => ((SPF_RESULTS as readonly string[]).includes(r) ? (r as SpfResult) : 'temperror');

/** A HELO name SPF can be checked for: a domain with at least one dot, not an address literal. */
export function heloIsDomain(helo: string): boolean {
  const h = helo.trim().replace(/\.$/, '');
  // Only digits and dots can be an IPv4 address; ":" (IPv6) already fails the name test.
  return h.includes('.') && !h.startsWith('[') && /^[a-z0-9_.-]+$/i.test(h) && (!/^[\d.]+$/.test(h) || isIP(h) === 0);
}

interface EvalBase {
  ip: string;
  helo: string;
  mta: string;
  strict: boolean;
  maxElapsedTime: number;
}

/** One check_host() evaluation by mailauth, or its remembered result (spf-memo.ts). */
async function evaluate(base: EvalBase, sender: string, resolve: SpfOptions['resolver'], memo: SpfMemo | undefined): Promise<SpfEvaluation> {
  const key = memo ? SpfMemo.key(base.ip, sender, base.helo) : '';
  const known = memo?.get(key);
  if (known) return known;
  const rec = memo ? memo.recorder(resolve) : undefined;
  let dnsLookups = 0;
  const counted = rec?.resolve ?? (async (name: string, rrtype: string) => (dnsLookups++, resolve(name, rrtype)));
  const r = await spf({ ...base, sender, resolver: counted as unknown as DNSResolver });
  const evaluation: SpfEvaluation = {
    result: r.status.result,
    domain: r.domain,
    explanation: r.explanation ?? '',
    record: r.rr ?? '',
    lookups: r.lookups?.count ?? 0,
    dnsLookups: rec ? rec.count : dnsLookups,
  };
  if (memo && rec) memo.set(key, rec, evaluation);
  return evaluation;
}

export async function checkSpf(input: SpfInput, opts: SpfOptions): Promise<SpfOutcome> {
  const base: EvalBase = {
    ip: input.ip,
    helo: input.helo,
    mta: opts.mta,
    strict: opts.strict,
    maxElapsedTime: opts.maxElapsedTime,
  };
  const nullSender = input.sender === '';
  const mailFrom = evaluate(base, nullSender ? '' : input.sender, opts.resolver, opts.memo);
  // For the null sender the MAIL FROM check already is the HELO check.
  const helo =
    nullSender || !opts.checkHelo || !heloIsDomain(input.helo)
      ? undefined
      : evaluate(base, `postmaster@${input.helo.trim().replace(/\.$/, '')}`, opts.resolver, opts.memo);
  const [m, h] = await Promise.all([mailFrom, helo]);
  const result = asResult(m.result);
  let heloResult: SpfResult = 'none';
  if (nullSender) heloResult = heloIsDomain(input.helo) ? result : 'none';
  else if (h) heloResult = asResult(h.result);
  return {
    result,
    domain: m.domain,
    identity: nullSender ? 'helo' : 'mailfrom',
    explanation: m.explanation,
    record: m.record,
    lookups: m.lookups,
    heloResult,
    dnsLookups: m.dnsLookups + (h?.dnsLookups ?? 0),
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
