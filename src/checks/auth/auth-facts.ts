// The facts the sender-authentication checks record, declared once so rules can be validated.
// SPF facts are known at MAIL FROM; DKIM, DMARC and ARC facts at end of DATA. docs/auth.md lists them.
import type { FactSpec } from '../../pipeline/facts.ts';

/** RFC 8601 section 2.7.2 SPF results. */
export const SPF_RESULTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror'] as const;
/** RFC 8601 section 2.7.1 DKIM results. */
export const DKIM_RESULTS = ['pass', 'fail', 'neutral', 'policy', 'none', 'temperror', 'permerror'] as const;
/** RFC 7489 section 11.2 DMARC results. */
export const DMARC_RESULTS = ['pass', 'fail', 'none', 'temperror', 'permerror'] as const;
/** RFC 8617 section 6 ARC results (plus temperror when a key lookup failed temporarily). */
export const ARC_RESULTS = ['pass', 'fail', 'none', 'temperror'] as const;
export const DMARC_POLICIES = ['', 'none', 'quarantine', 'reject'] as const;
/** Why DMARC could not be evaluated (the message has no single Author Domain, RFC 7489 section 6.6.1). */
export const DMARC_REASONS = ['', 'FROM_MISSING', 'FROM_MULTIPLE', 'FROM_INVALID'] as const;

export const DKIM_SIGNATURE_FIELDS = [
  'result',
  'domain',
  'selector',
  'identity',
  'algorithm',
  'key_bits',
  'body_length_limited',
  'body_unsigned_bytes',
  'aligned',
  'testing',
  'comment',
] as const;

export const spfFacts: readonly FactSpec[] = [
  {
    name: 'spf.result',
    stage: 'mail',
    type: 'string',
    values: SPF_RESULTS,
    description: 'SPF result for the MAIL FROM identity (the HELO identity for the null sender), RFC 7208',
  },
  { name: 'spf.domain', stage: 'mail', type: 'string', description: 'Domain SPF was checked for: the MAIL FROM domain, or the HELO name for the null sender' },
  { name: 'spf.identity', stage: 'mail', type: 'string', values: ['mailfrom', 'helo'], description: 'Which identity spf.result is for' },
  {
    name: 'spf.explanation',
    stage: 'mail',
    type: 'string',
    description: 'Explanation published by the domain (exp=, RFC 7208 6.2) for a fail; third-party text, "" if none',
  },
  { name: 'spf.record', stage: 'mail', type: 'string', description: 'The SPF record evaluated, "" if none was found' },
  { name: 'spf.lookups', stage: 'mail', type: 'number', description: 'DNS-querying terms counted against the limit of 10 (RFC 7208 4.6.4)' },
  {
    name: 'spf.helo_result',
    stage: 'mail',
    type: 'string',
    values: SPF_RESULTS,
    description: 'SPF result for the HELO identity (RFC 7208 2.3); none when HELO is not a domain or spf_helo is off',
  },
  { name: 'spf.dns_lookups', stage: 'mail', type: 'number', description: 'DNS lookups made for SPF at MAIL FROM (cache hits included)' },
];

export const dkimFacts: readonly FactSpec[] = [
  {
    name: 'dkim.signatures',
    stage: 'data',
    type: 'records',
    fields: DKIM_SIGNATURE_FIELDS,
    description:
      'Every DKIM-Signature (verified ones in header order, then unprocessable ones as neutral, then those over max_dkim_signatures as policy): result, domain (d=), selector (s=), identity (i=), algorithm (a=), key_bits (null if no key), body_length_limited (l= used), body_unsigned_bytes, aligned (passes and aligns with From for DMARC), testing (key t=y), comment',
  },
  {
    name: 'dkim.result',
    stage: 'data',
    type: 'string',
    values: DKIM_RESULTS,
    description: 'Best DKIM result: pass if any signature passes, else temperror, fail, policy, neutral, permerror, none (unsigned)',
  },
  { name: 'dkim.pass_domains', stage: 'data', type: 'string[]', description: 'd= domains of the passing signatures' },
  { name: 'dkim.count', stage: 'data', type: 'number', description: 'Number of DKIM-Signature header fields' },
  { name: 'dkim.skipped', stage: 'data', type: 'number', description: 'Signatures not verified because of max_dkim_signatures (reported as policy)' },
];

export const dmarcFacts: readonly FactSpec[] = [
  {
    name: 'dmarc.result',
    stage: 'data',
    type: 'string',
    values: DMARC_RESULTS,
    description: 'DMARC result (RFC 7489); none when there is no policy or no single Author Domain (see dmarc.reason)',
  },
  {
    name: 'dmarc.reason',
    stage: 'data',
    type: 'string',
    values: DMARC_REASONS,
    description: 'Why DMARC was not evaluated: FROM_MISSING (no From address), FROM_MULTIPLE (several From fields or domains), FROM_INVALID; "" otherwise',
  },
  { name: 'dmarc.domain', stage: 'data', type: 'string', description: 'Author Domain (RFC5322.From domain), "" if none' },
  { name: 'dmarc.policy_domain', stage: 'data', type: 'string', description: 'Domain the applied DMARC record was found at ("" if none)' },
  { name: 'dmarc.org_domain', stage: 'data', type: 'string', description: 'Organizational Domain of the Author Domain' },
  {
    name: 'dmarc.policy',
    stage: 'data',
    type: 'string',
    values: DMARC_POLICIES,
    description: 'Policy to apply: p for the domain itself, sp/np for a subdomain, one level lower with t=y; "" without a record',
  },
  { name: 'dmarc.p', stage: 'data', type: 'string', values: DMARC_POLICIES, description: 'Published p= tag' },
  { name: 'dmarc.sp', stage: 'data', type: 'string', values: DMARC_POLICIES, description: 'Published sp= tag (p when absent)' },
  { name: 'dmarc.np', stage: 'data', type: 'string', values: DMARC_POLICIES, description: 'Published np= tag (RFC 9989), "" when absent' },
  { name: 'dmarc.pct', stage: 'data', type: 'number', description: 'Published pct= (RFC 7489 6.3), 100 when absent; sampling is left to the rules' },
  { name: 'dmarc.test_mode', stage: 'data', type: 'boolean', description: 'Record has t=y (RFC 9989): the policy was lowered one level' },
  { name: 'dmarc.adkim', stage: 'data', type: 'string', values: ['', 'r', 's'], description: 'DKIM alignment mode (r relaxed, s strict)' },
  { name: 'dmarc.aspf', stage: 'data', type: 'string', values: ['', 'r', 's'], description: 'SPF alignment mode (r relaxed, s strict)' },
  {
    name: 'dmarc.alignment',
    stage: 'data',
    type: 'string',
    values: ['', 'none', 'dkim', 'spf', 'both'],
    description: 'Which authenticated identifier aligned with the Author Domain',
  },
  { name: 'dmarc.dkim_domain', stage: 'data', type: 'string', description: 'The aligned passing DKIM d= domain, "" if none' },
  { name: 'dmarc.spf_domain', stage: 'data', type: 'string', description: 'The aligned passing SPF domain, "" if none' },
  {
    name: 'dmarc.override',
    stage: 'data',
    type: 'string',
    values: ['', 'arc'],
    description: '"arc" when a failure is overridden by a trusted ARC sealer that saw dmarc=pass (forwarding, RFC 8617 7.2.1)',
  },
];

export const arcFacts: readonly FactSpec[] = [
  {
    name: 'arc.result',
    stage: 'data',
    type: 'string',
    values: ARC_RESULTS,
    description: 'ARC chain validation (RFC 8617 5.2): pass, fail, none (no chain), temperror (a key lookup failed temporarily)',
  },
  { name: 'arc.instances', stage: 'data', type: 'number', description: 'Number of ARC sets (the newest i=), 0 without a chain' },
  { name: 'arc.sealer', stage: 'data', type: 'string', description: 'd= of the newest ARC-Seal, "" without a chain' },
  { name: 'arc.trusted_sealer', stage: 'data', type: 'boolean', description: 'The chain passed and its newest sealer is in trusted_arc_sealers' },
  {
    name: 'arc.upstream_dmarc',
    stage: 'data',
    type: 'string',
    description: 'dmarc= result the newest sealer recorded in its ARC-Authentication-Results, "" if none (only when the chain passed)',
  },
  { name: 'arc.sealed', stage: 'data', type: 'boolean', description: 'mailgate added its own ARC set (arc_seal configured)' },
];

export const authSummaryFacts: readonly FactSpec[] = [
  {
    name: 'auth.dns_lookups',
    stage: 'data',
    type: 'number',
    description: 'DNS lookups made for SPF, DKIM, DMARC and ARC for this message (cache hits included)',
  },
  {
    name: 'auth.dns_temperror',
    stage: 'data',
    type: 'boolean',
    description: 'A DNS lookup for SPF, DKIM, DMARC or ARC failed temporarily (timeout, SERVFAIL)',
  },
  {
    name: 'auth.forged_results_removed',
    stage: 'data',
    type: 'number',
    description: 'Incoming Authentication-Results / ARC sets claiming our authserv-id that were removed',
  },
];

/** Every fact the auth checks can set. */
export const authFacts: readonly FactSpec[] = [...spfFacts, ...dkimFacts, ...dmarcFacts, ...arcFacts, ...authSummaryFacts];
