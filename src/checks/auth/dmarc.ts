// DMARC (RFC 7489, with the RFC 9989 DNS Tree Walk mailauth 7 implements): evaluates the policy
// for the Author Domain and returns the facts, including an explicit reason when the message has
// no single Author Domain (mailauth then gives no result at all; we never let that read as a pass).
import type { ARCResult, DMARCResult } from 'mailauth';
import { DMARC_POLICIES, type DMARC_REASONS, DMARC_RESULTS } from './auth-facts.ts';
import { evaluateDmarc, formatAuthHeaderRow, type AuthStatusLike } from './mailauth-internals.ts';

export type DmarcResult = (typeof DMARC_RESULTS)[number];
type Policy = (typeof DMARC_POLICIES)[number];
type Reason = (typeof DMARC_REASONS)[number];

export interface DmarcInput {
  /** RFC5322.From addresses (as mailauth's DKIM verifier collects them). */
  headerFrom: string[];
  /** Number of From header fields. */
  fromFields: number;
  /** The SPF result and the domain it was for (MAIL FROM domain, or HELO for the null sender). */
  spf: { result: string; domain: string };
  /** Passing-or-not DKIM signatures with their d= (only passing ones count). */
  dkim: ReadonlyArray<{ result: string; domain: string; underSized?: number; id?: string }>;
  arcResult?: ARCResult | undefined;
  resolver: (name: string, rrtype: string) => Promise<unknown[]>;
  strict?: boolean;
}

export interface DmarcOutcome {
  result: DmarcResult;
  reason: Reason;
  domain: string;
  policyDomain: string;
  orgDomain: string;
  policy: Policy;
  p: Policy;
  sp: Policy;
  np: Policy;
  pct: number;
  testMode: boolean;
  adkim: '' | 'r' | 's';
  aspf: '' | 'r' | 's';
  alignment: '' | 'none' | 'dkim' | 'spf' | 'both';
  dkimDomain: string;
  spfDomain: string;
  /** Signing domains whose passing signature aligned (formatted as mailauth does). */
  dkimAligned: Set<string>;
  /** Status for the dmarc resinfo. */
  status: AuthStatusLike;
}

const REASONS: Record<string, Reason> = {
  'no-author-domain': 'FROM_MISSING',
  'multiple-from-fields': 'FROM_MULTIPLE',
  'multiple-author-domains': 'FROM_MULTIPLE',
  'invalid-author-domain': 'FROM_INVALID',
};

const asPolicy = (v: unknown): Policy =>
  typeof v === 'string' && (DMARC_POLICIES as readonly string[]).includes(v.trim().toLowerCase()) ? (v.trim().toLowerCase() as Policy) : '';
const asResult = (v: unknown): DmarcResult => (typeof v === 'string' && (DMARC_RESULTS as readonly string[]).includes(v) ? (v as DmarcResult) : 'permerror');

/** pct= of a DMARC record (RFC 7489 6.3, an integer 0-100, default 100); RFC 9989 made it historic, mailauth 7 no longer reads it. */
export function parsePct(rr: string | undefined): number {
  const m = /(?:^|;)\s*pct\s*=\s*(\d{1,3})\s*(?:;|$)/i.exec(rr ?? '');
  const n = m ? Number(m[1]) : 100;
  return n >= 0 && n <= 100 ? n : 100;
}

function empty(reason: Reason, domain: string): DmarcOutcome {
  const comment =
    reason === 'FROM_MISSING'
      ? 'no From address'
      : reason === 'FROM_MULTIPLE'
        ? 'several From fields or domains'
        : reason === 'FROM_INVALID'
          ? 'invalid From domain'
          : '';
  return {
    result: 'none',
    reason,
    domain,
    policyDomain: '',
    orgDomain: '',
    policy: '',
    p: '',
    sp: '',
    np: '',
    pct: 100,
    testMode: false,
    adkim: '',
    aspf: '',
    alignment: '',
    dkimDomain: '',
    spfDomain: '',
    dkimAligned: new Set(),
    status: comment ? { result: 'none', comment } : { result: 'none' },
  };
}

export async function checkDmarc(input: DmarcInput): Promise<DmarcOutcome> {
  const ev = await evaluateDmarc({
    headerFrom: input.headerFrom,
    fromFields: input.fromFields,
    spfDomains: input.spf.result === 'pass' && input.spf.domain ? [input.spf.domain] : [],
    dkimDomains: input.dkim
      .filter((d) => d.result === 'pass' && d.domain)
      .map((d) => ({ domain: d.domain, ...(d.id !== undefined ? { id: d.id } : {}), ...(d.underSized ? { underSized: d.underSized } : {}) })),
    ...(input.arcResult ? { arcResult: input.arcResult } : {}),
    resolver: input.resolver,
    strict: input.strict ?? false,
  });
  if (!ev.response) return empty(REASONS[ev.reason ?? ''] ?? 'FROM_MISSING', '');
  const r: DMARCResult = ev.response;
  const fromDomain = typeof r.status.header?.from === 'string' ? r.status.header.from : '';
  const result = asResult(r.status.result);
  const hasRecord = Boolean(r.rr) && result !== 'none';
  const dkimDomain = r.alignment?.dkim?.result ?? '';
  const spfDomain = r.alignment?.spf?.result ?? '';
  const alignment = !hasRecord || result === 'temperror' ? '' : dkimDomain && spfDomain ? 'both' : dkimDomain ? 'dkim' : spfDomain ? 'spf' : 'none';
  return {
    result,
    reason: '',
    domain: fromDomain,
    policyDomain: hasRecord ? (r.policyDomain ?? '') : '',
    orgDomain: r.domain ?? '',
    policy: hasRecord ? asPolicy(r.policy) : '',
    p: hasRecord ? asPolicy(r.p) : '',
    sp: hasRecord ? asPolicy(r.sp) : '',
    np: hasRecord ? asPolicy(r.np) : '',
    pct: parsePct(r.rr),
    testMode: r.testMode === true,
    adkim: hasRecord ? (r.alignment?.dkim?.strict ? 's' : 'r') : '',
    aspf: hasRecord ? (r.alignment?.spf?.strict ? 's' : 'r') : '',
    alignment,
    dkimDomain,
    spfDomain,
    dkimAligned: ev.dkimAligned ?? new Set(),
    status: { ...(r.status as AuthStatusLike) },
  };
}

/** The dmarc resinfo (RFC 8601 2.7 / RFC 7489 11.2), noting an ARC override in the comment. */
export function dmarcResinfo(o: DmarcOutcome, override: string, sealer: string, strict: boolean): string {
  const status: AuthStatusLike = { ...o.status };
  if (override === 'arc') status.comment = `${typeof status.comment === 'string' && status.comment ? `${status.comment} ` : ''}override=arc sealer=${sealer}`;
  return formatAuthHeaderRow('dmarc', status, { strict });
}
