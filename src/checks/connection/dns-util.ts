// Small helpers the connection checks share: a lookup that gives up when the check's signal
// aborts (the runner's timeout), and the node:dns error code of a failure.
import type { DnsLookup } from '../../pipeline/deps.ts';

export function dnsCode(err: unknown): string {
  return typeof err === 'object' && err !== null ? String((err as { code?: unknown }).code ?? '') : '';
}

export function lookupWithSignal(dns: DnsLookup, name: string, rrtype: string, signal: AbortSignal): Promise<unknown[]> {
  if (signal.aborted) return Promise.reject(Object.assign(new Error('aborted'), { code: 'ETIMEOUT' }));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(Object.assign(new Error('aborted'), { code: 'ETIMEOUT' }));
    signal.addEventListener('abort', onAbort, { once: true });
    dns.resolve(name, rrtype).then(
      (r) => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
