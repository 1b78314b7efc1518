// The `urls` check: URLs and hosts from the text and HTML the MIME walk decoded, and optionally
// URI DNS blocklists (SURBL / Spamhaus DBL style, `<host>.<zone>` A lookups through the shared
// resolver), bounded per message and off by default like the DNSBLs.
import { isIP } from 'node:net';
import type { Check } from '../../pipeline/check.ts';
import type { FactRecord, FactSpec } from '../../pipeline/facts.ts';
import type { Deps } from '../../pipeline/deps.ts';
import type { UrlSettings } from '../../config/content-schema.ts';
import type { WalkLimits } from '../../message/mime-walk.ts';
import { dnsCode, lookupWithSignal } from '../connection/dns-util.ts';
import { extractUrls, type FoundUrl } from './url-extract.ts';
import { walkOf } from './walk-result.ts';

export const urlFacts: readonly FactSpec[] = [
  { name: 'url.count', stage: 'data', type: 'number', description: 'Distinct URLs found in the text and HTML parts (at most content.urls.max_urls)' },
  { name: 'url.urls', stage: 'data', type: 'string[]', description: 'The URLs, in order of appearance (at most max_urls)' },
  { name: 'url.hosts', stage: 'data', type: 'string[]', description: 'Distinct host names of the URLs, lower case, IDNs in punycode' },
  { name: 'url.truncated', stage: 'data', type: 'boolean', description: 'More URLs than max_urls, or the text was cut at max_text_bytes' },
  { name: 'url.ip_host', stage: 'data', type: 'boolean', description: 'Some URL uses an IP address instead of a host name' },
  {
    name: 'url.dnsbl_listed',
    stage: 'data',
    type: 'string[]',
    description: 'Hosts (or their parent domains) listed by a URI blocklist (only with content.urls.dnsbl.enabled)',
  },
  { name: 'url.dnsbl_lists', stage: 'data', type: 'string[]', description: 'Names of the URI blocklists that listed some host' },
  { name: 'url.dnsbl_score', stage: 'data', type: 'number', description: 'Sum of the weights of the URI blocklist hits (0 when none or off)' },
  { name: 'url.dnsbl_hits', stage: 'data', type: 'records', fields: ['host', 'list', 'answer', 'weight'], description: 'Every URI blocklist hit' },
  { name: 'url.dnsbl_errors', stage: 'data', type: 'string[]', description: 'URI blocklists whose lookups failed (timeout, SERVFAIL): not counted' },
];

/** The names looked up for a host: itself and its parent domain (no public-suffix list here). */
export function lookupNames(host: string): string[] {
  if (isIP(host)) {
    // URIBLs list IPv4 hosts reversed, like DNSBLs.
    return isIP(host) === 4 ? [host.split('.').reverse().join('.')] : [];
  }
  const labels = host.split('.');
  const names = [host];
  if (labels.length > 2) names.push(labels.slice(-2).join('.'));
  return names;
}

export interface UrlCheckOptions {
  settings: UrlSettings;
  walkLimits?: WalkLimits;
  deps?: Pick<Deps, 'dns'>;
}

export function createUrlCheck(opts: UrlCheckOptions): Check {
  const s = opts.settings;
  const bl = s.dnsbl;
  return {
    name: 'urls',
    effects: bl.enabled ? 'network' : 'none',
    stages: ['data'],
    facts: urlFacts,
    needs: ['mime.*'],
    timeoutMs: bl.enabled ? bl.timeout_ms + 2000 : 10_000,
    // URL facts are scoring inputs: a failure must not block mail.
    onFailure: 'continue',
    async run(input, out) {
      if (!input.message) return;
      const walk = await walkOf(input.message, opts.walkLimits);
      const found = new Map<string, FoundUrl>();
      let truncated = extractUrls(walk.text, found, s.max_urls);
      if (!truncated) truncated = extractUrls(walk.html, found, s.max_urls);
      const urls = [...found.values()];
      const hosts = [...new Set(urls.map((u) => u.host))];
      const f = out.facts;
      f.set('url.count', urls.length);
      f.set(
        'url.urls',
        urls.map((u) => u.url),
      );
      f.set('url.hosts', hosts);
      f.set('url.truncated', truncated || walk.textTruncated);
      f.set(
        'url.ip_host',
        hosts.some((h) => isIP(h.replace(/^\[|\]$/g, '')) !== 0),
      );
      const hits: FactRecord[] = [];
      const errors = new Set<string>();
      if (bl.enabled && bl.lists.length && opts.deps?.dns) {
        const dns = opts.deps.dns;
        const jobs: Array<{ host: string; name: string; zone: string; list: string; weight: number }> = [];
        const seen = new Set<string>();
        for (const h of hosts) {
          for (const n of lookupNames(h)) {
            if (seen.has(n)) continue;
            seen.add(n);
            for (const l of bl.lists)
              if (jobs.length < bl.max_lookups) jobs.push({ host: n, name: `${n}.${l.zone}`, zone: l.zone, list: l.name ?? l.zone, weight: l.weight });
          }
        }
        const ac = new AbortController();
        const timer = setTimeout(() => ac.abort(), bl.timeout_ms);
        const onAbort = () => ac.abort();
        input.signal.addEventListener('abort', onAbort, { once: true });
        try {
          await Promise.all(
            jobs.map(async (j) => {
              try {
                const answers = (await lookupWithSignal(dns, j.name, 'A', ac.signal)) as string[];
                // 127.0.0.0/8 answers list; 127.255.255.0/24 are the lists' error codes (Spamhaus).
                const listed = answers.filter((a) => typeof a === 'string' && a.startsWith('127.') && !a.startsWith('127.255.255.'));
                if (answers.some((a) => typeof a === 'string' && a.startsWith('127.255.255.'))) errors.add(j.list);
                if (listed[0]) hits.push({ host: j.host, list: j.list, answer: listed[0], weight: j.weight });
              } catch (err) {
                const code = dnsCode(err);
                if (code !== 'ENOTFOUND' && code !== 'ENODATA') errors.add(j.list);
              }
            }),
          );
        } finally {
          clearTimeout(timer);
          input.signal.removeEventListener('abort', onAbort);
        }
      }
      f.set('url.dnsbl_hits', hits);
      f.set('url.dnsbl_listed', [...new Set(hits.map((h) => String(h.host)))]);
      f.set('url.dnsbl_lists', [...new Set(hits.map((h) => String(h.list)))]);
      f.set(
        'url.dnsbl_score',
        hits.reduce((a, h) => a + Number(h.weight), 0),
      );
      f.set('url.dnsbl_errors', [...errors]);
    },
  };
}
