// Forward-confirmed reverse DNS (FCrDNS): the client's PTR names, and whether one of them resolves
// back to the client's address. Missing or unconfirmed rDNS is a classic sign of a bot on a
// dynamic address. DNS trouble is a result (`temperror`), never an exception.
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { DnsLookup } from '../../pipeline/deps.ts';
import { ipFamily, normalizeIp, ptrName } from '../../net/ip.ts';
import { dnsCode, lookupWithSignal } from './dns-util.ts';

export const RDNS_STATUSES = ['pass', 'fail', 'none', 'temperror'] as const;

export const fcrdnsFacts: readonly FactSpec[] = [
  {
    name: 'client.rdns',
    stage: 'connect',
    type: 'string',
    description: 'Reverse DNS name of the client: the forward-confirmed PTR name if any, else the first PTR name, "" if none',
  },
  { name: 'client.rdns_names', stage: 'connect', type: 'string[]', description: 'Every PTR name of the client address (at most 10)' },
  {
    name: 'client.fcrdns',
    stage: 'connect',
    type: 'boolean',
    description: 'A PTR name of the client resolves back to the client address (forward-confirmed rDNS)',
  },
  {
    name: 'client.rdns_status',
    stage: 'connect',
    type: 'string',
    values: RDNS_STATUSES,
    description: 'pass (forward-confirmed), fail (PTR names that do not resolve back), none (no PTR record), temperror (DNS failure)',
  },
];

/** At most this many PTR names are checked (a host with more is misconfigured or hostile). */
const MAX_NAMES = 10;

export function createFcrdnsCheck(deps: { dns?: DnsLookup | undefined }, opts: { timeoutMs?: number } = {}): Check {
  return {
    name: 'fcrdns',
    effects: 'network',
    stages: ['connect'],
    facts: fcrdnsFacts,
    timeoutMs: opts.timeoutMs ?? 5000,
    // Unknown rDNS only removes a signal; refusing mail for it would be worse.
    onFailure: 'continue',
    async run(input, out) {
      const dns = deps.dns;
      const ipFact = input.facts.get('client.ip');
      const ip = typeof ipFact === 'string' ? normalizeIp(ipFact) : undefined;
      const ptr = ip ? ptrName(ip) : undefined;
      if (!dns || !ip || !ptr) return;
      let names: string[];
      try {
        const recs = await lookupWithSignal(dns, ptr, 'PTR', input.signal);
        names = [...new Set(recs.filter((r): r is string => typeof r === 'string').map((n) => n.toLowerCase().replace(/\.$/, '')))].slice(0, MAX_NAMES);
      } catch (err) {
        const code = dnsCode(err);
        const none = code === 'ENOTFOUND' || code === 'ENODATA';
        out.facts.set('client.rdns', '');
        out.facts.set('client.rdns_names', []);
        out.facts.set('client.fcrdns', false);
        out.facts.set('client.rdns_status', none ? 'none' : 'temperror');
        return;
      }
      out.facts.set('client.rdns_names', names);
      if (names.length === 0) {
        out.facts.set('client.rdns', '');
        out.facts.set('client.fcrdns', false);
        out.facts.set('client.rdns_status', 'none');
        return;
      }
      const rr = ipFamily(ip) === 4 ? 'A' : 'AAAA';
      let temp = false;
      const confirmed = await Promise.all(
        names.map(async (name) => {
          try {
            const addrs = await lookupWithSignal(dns, name, rr, input.signal);
            return addrs.some((a) => typeof a === 'string' && normalizeIp(a) === ip);
          } catch (err) {
            const code = dnsCode(err);
            if (code !== 'ENOTFOUND' && code !== 'ENODATA') temp = true;
            return false;
          }
        }),
      );
      const idx = confirmed.indexOf(true);
      out.facts.set('client.rdns', idx >= 0 ? (names[idx] ?? '') : (names[0] ?? ''));
      out.facts.set('client.fcrdns', idx >= 0);
      out.facts.set('client.rdns_status', idx >= 0 ? 'pass' : temp ? 'temperror' : 'fail');
    },
  };
}
