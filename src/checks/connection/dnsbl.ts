// DNSBL / DNSWL lookups of the client address with weights, like Postfix postscreen_dnsbl_sites:
// each list that answers adds its weight (negative for allow lists) to `dnsbl.score`, and rules
// decide what a score or a particular listing means. Configured in the `dnsbl:` section of the
// rules files (off by default: networks without internet access, and public resolvers that
// most lists refuse to answer).
import { z } from 'zod';
import type { Check } from '../../pipeline/check.ts';
import type { FactRecord, FactSpec } from '../../pipeline/facts.ts';
import type { DnsLookup } from '../../pipeline/deps.ts';
import { IpSet, isNonGlobalIp, normalizeIp, parseCidr, reverseName } from '../../net/ip.ts';
import { getSection, type SectionSpec } from '../../rules/loader.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';
import { metrics } from '../../metrics/registry.ts';
import { globToRegExp, type TextPattern } from '../../message/text-patterns.ts';
import { dnsCode, lookupWithSignal } from './dns-util.ts';

export const dnsblFacts: readonly FactSpec[] = [
  {
    name: 'dnsbl.score',
    stage: 'connect',
    type: 'number',
    description: 'Sum of the weights of the lists that list the client (allow lists have negative weights); 0 when none',
  },
  { name: 'dnsbl.listed', stage: 'connect', type: 'string[]', description: 'Names of the block lists (weight > 0) that list the client' },
  { name: 'dnswl.listed', stage: 'connect', type: 'string[]', description: 'Names of the allow lists (weight <= 0) that list the client' },
  {
    name: 'dnsbl.hits',
    stage: 'connect',
    type: 'records',
    fields: ['list', 'zone', 'answer', 'weight'],
    description: 'Every counted answer: list name, zone, the answer address (e.g. 127.0.0.2) and the weight it added',
  },
  { name: 'dnsbl.errors', stage: 'connect', type: 'string[]', description: 'Lists whose lookup failed (timeout, SERVFAIL): not counted' },
];

const ZONE = /^(?=.{1,200}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/i;

const listSchema = z.strictObject({
  /** Label used in facts, rules and metrics; default: the zone. */
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected letters, digits, _ . -')
    .optional(),
  zone: z.string().regex(ZONE, 'expected a DNS zone like zen.spamhaus.org'),
  /** Added to dnsbl.score when the list answers; negative for allow lists (DNSWL). */
  weight: z.number().finite().default(1),
  /**
   * Answers that count, as addresses, CIDR blocks or globs (["127.0.0.2", "127.0.0.4/30",
   * "127.0.*.3"]).
   * Default: any 127.0.0.0/8 answer except 127.255.255.0/24, which lists use for errors
   * ("query refused", "open resolver") — those must never count as a listing.
   */
  returns: z.array(z.string()).min(1).optional(),
});

export const dnsblSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** Skip private, loopback and documentation addresses (never sent to public lists). */
  skip_private: z.boolean().default(true),
  /** Give up on lists that have not answered after this long. */
  timeout_ms: z.number().int().min(100).max(30_000).default(2000),
  lists: z.array(listSchema).default([]),
});
export type DnsblInput = z.output<typeof dnsblSchema>;

export interface DnsblList {
  name: string;
  zone: string;
  weight: number;
  returns: { has(ip: string): boolean };
}

export interface DnsblConfig {
  enabled: boolean;
  skipPrivate: boolean;
  timeoutMs: number;
  lists: DnsblList[];
}

/** Any 127.0.0.0/8 answer except 127.255.255.0/24 (the error answers lists use). */
const defaultReturns: { has(ip: string): boolean } = {
  has: (ip) => ip.startsWith('127.') && !ip.startsWith('127.255.255.'),
};

/** The `dnsbl:` section of the rules files. */
export const dnsblSection: SectionSpec<DnsblInput, DnsblConfig> = {
  key: 'dnsbl',
  schema: dnsblSchema,
  merge: 'merge',
  compile(value, ctx) {
    const lists: DnsblList[] = value.lists.map((l, i) => {
      let returns = defaultReturns;
      if (l.returns) {
        const set = new IpSet();
        const globs: TextPattern[] = [];
        l.returns.forEach((r, j) => {
          if (r.includes('*')) globs.push(globToRegExp(r));
          else if (!parseCidr(r)) ctx.error(['lists', i, 'returns', j], `"${r}" is not an address, CIDR block or glob`);
          else set.add(r);
        });
        returns = { has: (ip) => set.has(ip) || globs.some((g) => g.test(ip)) };
      }
      return { name: l.name ?? l.zone.toLowerCase(), zone: l.zone.toLowerCase().replace(/\.$/, ''), weight: l.weight, returns };
    });
    return { enabled: value.enabled, skipPrivate: value.skip_private, timeoutMs: value.timeout_ms, lists };
  },
};

/**
 * The DNSBL check. Its settings come from the rules' `dnsbl:` section (via onRulesLoaded), or
 * from `config` when given (tests).
 */
export function createDnsblCheck(deps: { dns?: DnsLookup | undefined }, config?: () => DnsblConfig | undefined): Check & RulesAware {
  let fromRules: DnsblConfig | undefined;
  return {
    name: 'dnsbl',
    effects: 'network',
    rulesSections: [dnsblSection],
    onRulesLoaded(loaded) {
      fromRules = getSection(loaded, dnsblSection);
    },
    stages: ['connect'],
    facts: dnsblFacts,
    // The runner's timeout is a backstop; each lookup gives up at timeout_ms.
    timeoutMs: 30_000,
    // A DNSBL outage must not stop mail: lists that fail are reported in dnsbl.errors.
    onFailure: 'continue',
    async run(input, out) {
      const cfg = config ? config() : fromRules;
      const dns = deps.dns;
      const ipFact = input.facts.get('client.ip');
      const ip = typeof ipFact === 'string' ? normalizeIp(ipFact) : undefined;
      if (!cfg?.enabled || cfg.lists.length === 0 || !dns || !ip) return;
      if (cfg.skipPrivate && isNonGlobalIp(ip)) return;
      const rev = reverseName(ip);
      if (!rev) return;
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), cfg.timeoutMs);
      const onAbort = () => ac.abort();
      input.signal.addEventListener('abort', onAbort, { once: true });
      try {
        // Lists sharing a zone (different `returns`) share one query.
        const zones = [...new Set(cfg.lists.map((l) => l.zone))];
        const answers = new Map<string, string[] | 'error'>();
        await Promise.all(
          zones.map(async (zone) => {
            try {
              const recs = await lookupWithSignal(dns, `${rev}.${zone}`, 'A', ac.signal);
              answers.set(
                zone,
                recs.filter((r): r is string => typeof r === 'string'),
              );
            } catch (err) {
              const code = dnsCode(err);
              answers.set(zone, code === 'ENOTFOUND' || code === 'ENODATA' ? [] : 'error');
            }
          }),
        );
        const hits: FactRecord[] = [];
        const listed = new Set<string>();
        const allowed = new Set<string>();
        const errors = new Set<string>();
        let score = 0;
        for (const l of cfg.lists) {
          const a = answers.get(l.zone);
          if (a === 'error') {
            errors.add(l.name);
            continue;
          }
          const answer = (a ?? []).find((x) => l.returns.has(x));
          if (answer === undefined) continue;
          hits.push({ list: l.name, zone: l.zone, answer, weight: l.weight });
          score += l.weight;
          (l.weight > 0 ? listed : allowed).add(l.name);
          metrics.dnsblHits.inc({ list: l.name });
        }
        out.facts.set('dnsbl.score', Math.round(score * 1000) / 1000);
        out.facts.set('dnsbl.listed', [...listed]);
        out.facts.set('dnswl.listed', [...allowed]);
        out.facts.set('dnsbl.hits', hits);
        out.facts.set('dnsbl.errors', [...errors]);
      } finally {
        clearTimeout(timer);
        input.signal.removeEventListener('abort', onAbort);
      }
    },
  };
}
