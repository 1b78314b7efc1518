// Sender authentication checks: SPF at MAIL FROM, then DKIM, ARC and DMARC at end of DATA, all
// with mailauth and mailgate's resolver. They record facts (auth-facts.ts) and header edits:
// our Authentication-Results (and optionally an ARC set) prepended, forged results removed.
// DNS trouble becomes temperror results, never a pass; the rules decide what to do with them.
// Deep imports: the package root also loads BIMI/VMC (undici, joi, @peculiar/*), ~40 MiB mailgate never uses.
import { arc } from 'mailauth/lib/arc/index.js';
import type { ARCData, DNSResolver } from 'mailauth';
import { metrics } from '../../metrics/registry.ts';
import type { Config } from '../../config/schema.ts';
import { createResolver, DnsScope } from '../../dns/resolver.ts';
import type { Check, CheckInput, CheckOutput } from '../../pipeline/check.ts';
import type { Deps, DnsLookup } from '../../pipeline/deps.ts';
import type { FactSet } from '../../pipeline/facts.ts';
import type { AuthConfig } from '../../config/auth-schema.ts';
import { arcOverridesDmarc, arcSealBlocker, createArcSet, loadSealKey, strictArcData, summariseArc, type LoadedSealKey } from './arc.ts';
import { bestResult, keySizeGuard, prepareDkimInput, signatureOutcomes } from './dkim.ts';
import { verifyDkim } from './dkim-feed.ts';
import { checkDmarc, dmarcResinfo } from './dmarc.ts';
import { arcFacts, authSummaryFacts, dkimFacts, dmarcFacts, spfFacts } from './auth-facts.ts';
import { authResultsValue, findForged, removalPredicate } from './auth-results-header.ts';
import { formatAuthHeaderRow, formatAuthservId } from './mailauth-internals.ts';
import { checkSpf, spfResinfo } from './spf.ts';
import { SpfMemo } from './spf-memo.ts';

export { authFacts, arcFacts, authSummaryFacts, dkimFacts, dmarcFacts, spfFacts } from './auth-facts.ts';

const str = (facts: FactSet, name: string): string => {
  const v = facts.get(name);
  return typeof v === 'string' ? v : '';
};
const num = (facts: FactSet, name: string): number => {
  const v = facts.get(name);
  return typeof v === 'number' ? v : 0;
};

export interface AuthCheckOptions {
  /** Clock for DKIM expiry (x=) and ARC sealing timestamps; default deps.now, else Date.now. */
  now?: () => number;
  /** The SPF memo to use (tests look into it); default: one made from `auth.spf_memo_*`. */
  spfMemo?: SpfMemo;
}

/** The settings the auth checks need, from the whole config. */
export interface AuthSettings {
  hostname: string;
  auth: AuthConfig;
}

/**
 * Builds the SPF check (`spf`, at mail) and the DKIM/ARC/DMARC check (`dkim-arc-dmarc`, at data).
 * Uses `deps.dns` (a per-message DnsScope wraps it) or, without one, a resolver from `config.dns`.
 */
export function createAuthChecks(
  config: AuthSettings & Partial<Pick<Config, 'dns'>>,
  deps: Pick<Deps, 'dns'> & Partial<Deps>,
  opts: AuthCheckOptions = {},
): Check[] {
  const cfg = config.auth;
  const dns: DnsLookup = deps.dns ?? createResolver(config.dns ?? { timeout_ms: 2000 });
  const authservIdRaw = cfg.authserv_id ?? config.hostname;
  const authservId = formatAuthservId(authservIdRaw, false);
  const ourIds = [...new Set([authservIdRaw, authservId])];
  const sealKey: LoadedSealKey | undefined = cfg.arc_seal ? loadSealKey(cfg.arc_seal) : undefined;
  const now = opts.now ?? deps.now ?? Date.now;
  const common = { timeoutMs: cfg.timeout_ms, onFailure: cfg.on_failure } as const;
  // SPF results per (IP, domain), valid while the answers they read are in the resolver's cache:
  // only with a resolver that can say so (src/dns/resolver.ts `cached`).
  const cached = dns.cached?.bind(dns);
  const spfMemo =
    opts.spfMemo ??
    (cached && cfg.spf_memo_size > 0 ? new SpfMemo({ size: cfg.spf_memo_size, maxTtlMs: cfg.spf_memo_max_ttl_s * 1000, cached, now }) : undefined);

  const spfCheck: Check = {
    name: 'spf',
    effects: 'network',
    stages: ['mail'],
    facts: spfFacts,
    ...common,
    async run(input: CheckInput, out: CheckOutput): Promise<void> {
      const scope = new DnsScope(dns);
      const f = input.facts;
      const nullSender = f.get('mail.null_sender') === true || str(f, 'mail.from') === '';
      const res = await checkSpf(
        { ip: str(f, 'client.ip'), sender: nullSender ? '' : str(f, 'mail.from'), helo: str(f, 'helo.name') },
        {
          resolver: scope.resolve,
          mta: authservIdRaw,
          strict: cfg.strict.spf,
          checkHelo: cfg.spf_helo,
          maxElapsedTime: Math.max(1000, cfg.timeout_ms - 1000),
          memo: spfMemo,
        },
      );
      out.facts.set('spf.result', res.result);
      out.facts.set('spf.domain', res.domain);
      out.facts.set('spf.identity', res.identity);
      out.facts.set('spf.explanation', res.explanation);
      out.facts.set('spf.record', res.record);
      out.facts.set('spf.lookups', res.lookups);
      out.facts.set('spf.helo_result', res.heloResult);
      out.facts.set('spf.dns_lookups', res.dnsLookups);
      metrics.authResults.inc({ method: 'spf', result: res.result });
    },
  };

  const dataCheck: Check = {
    name: 'dkim-arc-dmarc',
    effects: 'network',
    // DMARC aligns with the SPF result of MAIL FROM (an earlier stage).
    needs: ['spf.*'],
    stages: ['data'],
    facts: [...dkimFacts, ...dmarcFacts, ...arcFacts, ...authSummaryFacts],
    ...common,
    async run(input: CheckInput, out: CheckOutput): Promise<void> {
      const message = input.message;
      if (!message) return;
      const f = input.facts;

      // First, before anything that can fail: forged results must go even if the rest throws.
      const forged = findForged(message.headers, ourIds);
      out.edits.removeHeaders.push(removalPredicate(ourIds, forged, cfg.strip_headers));
      out.facts.set('auth.forged_results_removed', forged.authResults + forged.arcInstances.size);

      const scope = new DnsScope(dns);
      const guard = keySizeGuard(scope.resolve, cfg.max_key_bits);
      const resolver = guard.resolve as unknown as DNSResolver;
      const prepared = prepareDkimInput(message, cfg.max_dkim_signatures);
      const sender = str(f, 'mail.from');
      const dkim = await verifyDkim(prepared.input, {
        resolver,
        ...(sender ? { sender } : {}),
        minBitLength: cfg.min_key_bits,
        rejectRsaSha1: cfg.reject_rsa_sha1,
        curTime: new Date(now()),
        strict: cfg.strict.dkim,
        ...(sealKey ? { seal: { signingDomain: sealKey.domain, selector: sealKey.selector, privateKey: sealKey.pem } } : {}),
      });
      const arcRes = await arc(cfg.strict.dkim ? (dkim.arc as unknown as ARCData) : strictArcData(dkim), {
        resolver,
        minBitLength: cfg.min_key_bits,
        strict: cfg.strict.dkim,
        ...(str(f, 'client.ip') ? { ip: str(f, 'client.ip') } : {}),
      });
      const arcSummary = summariseArc(arcRes, cfg.trusted_arc_sealers, (name) => scope.troubleWith(name));

      const spfResult = str(f, 'spf.result') || 'none';
      const dmarc = await checkDmarc({
        headerFrom: dkim.headerFrom,
        fromFields: dkim.fromFields,
        spf: { result: spfResult, domain: str(f, 'spf.domain') },
        dkim: dkim.results.map((r) => ({
          result: guard.oversized.has(`${r.selector ?? ''}._domainkey.${r.signingDomain ?? ''}`.toLowerCase()) ? 'policy' : r.status.result,
          domain: r.signingDomain ?? '',
          ...(r.id !== undefined ? { id: r.id } : {}),
          ...(r.status.underSized ? { underSized: r.status.underSized } : {}),
        })),
        arcResult: arcRes,
        resolver: scope.resolve,
        strict: cfg.strict.dmarc,
      });

      // DKIM facts (alignment taken from the DMARC evaluation when there was one).
      const sigs = signatureOutcomes(dkim.results, {
        oversized: guard.oversized,
        verified: prepared.verified,
        skipped: prepared.skipped,
        maxKeyBits: cfg.max_key_bits,
        maxSignatures: cfg.max_dkim_signatures,
        dkimAligned: dmarc.reason === '' && dmarc.policyDomain !== '' ? dmarc.dkimAligned : undefined,
      });
      const dkimBest = bestResult(sigs.map((s) => String(s.record.result)));
      out.facts.set(
        'dkim.signatures',
        sigs.map((s) => s.record),
      );
      out.facts.set('dkim.result', dkimBest);
      out.facts.set('dkim.pass_domains', [...new Set(sigs.filter((s) => s.record.result === 'pass').map((s) => String(s.record.domain).toLowerCase()))]);
      out.facts.set('dkim.count', prepared.total);
      out.facts.set('dkim.skipped', prepared.skipped.length);

      // ARC facts.
      out.facts.set('arc.result', arcSummary.result);
      out.facts.set('arc.instances', arcSummary.instances);
      out.facts.set('arc.sealer', arcSummary.sealer);
      out.facts.set('arc.trusted_sealer', arcSummary.trustedSealer);
      out.facts.set('arc.upstream_dmarc', arcSummary.upstreamDmarc);

      // DMARC facts.
      const override = dmarc.result === 'fail' && arcOverridesDmarc(arcSummary) ? 'arc' : '';
      out.facts.set('dmarc.result', dmarc.result);
      out.facts.set('dmarc.reason', dmarc.reason);
      out.facts.set('dmarc.domain', dmarc.domain);
      out.facts.set('dmarc.policy_domain', dmarc.policyDomain);
      out.facts.set('dmarc.org_domain', dmarc.orgDomain);
      out.facts.set('dmarc.policy', dmarc.policy);
      out.facts.set('dmarc.p', dmarc.p);
      out.facts.set('dmarc.sp', dmarc.sp);
      out.facts.set('dmarc.np', dmarc.np);
      out.facts.set('dmarc.pct', dmarc.pct);
      out.facts.set('dmarc.test_mode', dmarc.testMode);
      out.facts.set('dmarc.adkim', dmarc.adkim);
      out.facts.set('dmarc.aspf', dmarc.aspf);
      out.facts.set('dmarc.alignment', dmarc.alignment);
      out.facts.set('dmarc.dkim_domain', dmarc.dkimDomain);
      out.facts.set('dmarc.spf_domain', dmarc.spfDomain);
      out.facts.set('dmarc.override', override);

      // Authentication-Results: spf, each dkim signature, dmarc, arc (RFC 8601 2.7).
      const resinfos = [
        f.has('spf.result')
          ? spfResinfo({
              result: spfResult,
              identity: str(f, 'spf.identity'),
              sender,
              helo: str(f, 'helo.name'),
              ip: str(f, 'client.ip'),
              domain: str(f, 'spf.domain'),
              mta: authservIdRaw,
              strict: cfg.strict.spf,
            })
          : formatAuthHeaderRow('spf', { result: 'temperror', comment: 'SPF was not evaluated' }),
        ...(sigs.length > 0
          ? sigs.map((s) => formatAuthHeaderRow('dkim', s.status, { strict: cfg.strict.dkim }))
          : [formatAuthHeaderRow('dkim', { result: 'none', comment: 'message not signed' })]),
        dmarcResinfo(dmarc, override, arcSummary.sealer, cfg.strict.dmarc),
        formatAuthHeaderRow('arc', {
          result: arcSummary.result,
          ...(arcRes.status.comment ? { comment: arcRes.status.comment } : {}),
          ...(arcSummary.result === 'temperror' ? { comment: 'key lookup failed temporarily' } : {}),
        }),
      ];
      const arValue = authResultsValue(authservId, resinfos);

      // The seal is a signer: it runs in the finalize step, after every header edit (a rule's
      // subject tag included), over the header block as delivered.
      const sealable = sealKey !== undefined && arcSealBlocker(dkim, arcRes) === undefined;
      if (sealKey && sealable) {
        const key = sealKey;
        const logger = deps.logger;
        out.edits.signers.push({
          name: 'arc-seal',
          order: 10,
          async sign(finalHeader) {
            const set = await createArcSet(dkim, arcRes, arValue, key, new Date(now()), cfg.strict.dkim, finalHeader);
            if (set.error) logger?.warn({ err: set.error }, 'ARC seal not added');
            return set.fields;
          },
        });
      }
      out.edits.addHeaders.push({ name: 'Authentication-Results', value: arValue });
      out.facts.set('arc.sealed', sealable);

      out.facts.set('auth.dns_lookups', num(f, 'spf.dns_lookups') + scope.lookups);
      out.facts.set('auth.dns_temperror', scope.troubles.length > 0 || spfResult === 'temperror');

      metrics.authResults.inc({ method: 'dkim', result: dkimBest });
      metrics.authResults.inc({ method: 'dmarc', result: dmarc.result });
      metrics.authResults.inc({ method: 'arc', result: arcSummary.result });
    },
  };

  return [spfCheck, dataCheck];
}
