// HELO/EHLO sanity: is the name a fully-qualified domain (RFC 5321 §4.1.1.1 asks for the client's
// FQDN, or an address literal), is a literal the client's own address, and does the client claim
// to be us — bots often greet with our own host or domain name, or a bare IP.
import { domainToASCII } from 'node:url';
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import { normalizeIp } from '../../net/ip.ts';

export const heloFacts: readonly FactSpec[] = [
  {
    name: 'helo.is_ip_literal',
    stage: 'helo',
    type: 'boolean',
    description: 'HELO is an address literal, [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 §4.1.3)',
  },
  {
    name: 'helo.is_bare_ip',
    stage: 'helo',
    type: 'boolean',
    description: 'HELO is an IP address without the brackets of a literal (invalid, typical of bots)',
  },
  { name: 'helo.literal_mismatch', stage: 'helo', type: 'boolean', description: 'HELO gives an IP address (literal or bare) that is not the client address' },
  {
    name: 'helo.is_our_name',
    stage: 'helo',
    type: 'boolean',
    description: 'HELO is our own host name or one of our domains (a forgery: we never connect to ourselves)',
  },
  {
    name: 'helo.fqdn',
    stage: 'helo',
    type: 'boolean',
    description: 'HELO is a syntactically valid fully-qualified domain name (two labels or more, TLD not numeric)',
  },
  { name: 'helo.matches_rdns', stage: 'helo', type: 'boolean', description: 'HELO equals the client reverse DNS name (client.rdns); absent without rDNS' },
];

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function isFqdn(name: string): boolean {
  let n = name.replace(/\.$/, '').toLowerCase();
  if (/[^\x20-\x7e]/.test(n)) n = domainToASCII(n);
  if (!n || n.length > 253) return false;
  const labels = n.split('.');
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return false;
  return !/^\d+$/.test(labels[labels.length - 1] ?? '');
}

/** Facts of one HELO name; `client` is the client address, `ours` our host name and domains. */
export function heloSanity(helo: string, client: string | undefined, ours: readonly string[], rdns?: string): Record<string, boolean> {
  const name = helo.trim();
  const literal = /^\[.*\]$/.test(name);
  const literalIp = literal ? normalizeIp(name) : undefined;
  const bareIp = !literal ? normalizeIp(name) : undefined;
  const given = literalIp ?? bareIp;
  const clientIp = client !== undefined ? normalizeIp(client) : undefined;
  const lower = name.toLowerCase().replace(/\.$/, '');
  const out: Record<string, boolean> = {
    'helo.is_ip_literal': literal && literalIp !== undefined,
    'helo.is_bare_ip': bareIp !== undefined,
    'helo.literal_mismatch': given !== undefined && clientIp !== undefined && given !== clientIp,
    'helo.is_our_name': ours.some((o) => o.toLowerCase().replace(/\.$/, '') === lower),
    'helo.fqdn': bareIp === undefined && !literal && isFqdn(name),
  };
  if (rdns) out['helo.matches_rdns'] = rdns.toLowerCase().replace(/\.$/, '') === lower;
  return out;
}

export function createHeloCheck(opts: { ourNames: () => readonly string[] }): Check {
  return {
    name: 'helo-sanity',
    effects: 'none',
    stages: ['helo'],
    facts: heloFacts,
    timeoutMs: 1000,
    onFailure: 'continue',
    run(input, out) {
      const helo = input.facts.get('helo.name');
      if (typeof helo !== 'string') return;
      const ip = input.facts.get('client.ip');
      const rdns = input.facts.get('client.rdns');
      const facts = heloSanity(helo, typeof ip === 'string' ? ip : undefined, opts.ourNames(), typeof rdns === 'string' ? rdns : undefined);
      for (const [k, v] of Object.entries(facts)) out.facts.set(k, v);
    },
  };
}
