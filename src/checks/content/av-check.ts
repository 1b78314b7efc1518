// The `antivirus` check: streams the raw message (clamd decodes MIME, uuencode and archives
// itself, the safety net for whatever our walk misreads) and optionally each decoded attachment
// to clamd. Unscanned is never clean: size limits and Heuristics.Limits.Exceeded set av.unscanned.
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { ClamavConfig } from '../../config/content-schema.ts';
import type { WalkLimits } from '../../message/mime-walk.ts';
import { ClamdClient, type ScanResult } from './clamd-client.ts';
import { contentMetrics } from './content-metrics.ts';
import { walkOf } from './walk-result.ts';

export const avFacts: readonly FactSpec[] = [
  {
    name: 'av.result',
    stage: 'data',
    type: 'string',
    values: ['clean', 'virus', 'unscanned', 'error'],
    description:
      'clamd verdict for the message: clean, virus, unscanned (a clamd limit was hit: not clean) or error (clamd failed and clamav.on_failure is continue)',
  },
  { name: 'av.virus', stage: 'data', type: 'boolean', description: 'clamd found malware' },
  { name: 'av.signature', stage: 'data', type: 'string', description: 'Name of the first signature found ("" when none), e.g. Eicar-Signature' },
  { name: 'av.signatures', stage: 'data', type: 'string[]', description: 'Every signature found (raw message and attachment scans)' },
  {
    name: 'av.unscanned',
    stage: 'data',
    type: 'boolean',
    description: 'Some part was not scanned completely (StreamMaxLength, Heuristics.Limits.Exceeded, or an error with on_failure continue)',
  },
  { name: 'av.unscanned_reason', stage: 'data', type: 'string', description: 'Why av.unscanned ("" when scanned)' },
];

export interface AvCheckOptions {
  config: ClamavConfig;
  walkLimits?: WalkLimits;
}

export function createAvCheck(opts: AvCheckOptions): Check {
  const c = opts.config;
  const client = new ClamdClient({
    host: c.host,
    port: c.port,
    connectTimeoutMs: c.connect_timeout_ms,
    timeoutMs: c.timeout_ms,
    streamMaxBytes: c.stream_max_bytes,
    poolSize: c.pool_size,
    ...(c.socket ? { socket: c.socket } : {}),
  });
  return {
    name: 'antivirus',
    effects: 'network',
    stages: ['data'],
    facts: avFacts,
    ...(c.scan_attachments ? { needs: ['mime.*'] } : {}),
    // Our own timeouts fire first and say what happened; this is the backstop.
    timeoutMs: c.connect_timeout_ms + c.timeout_ms * (c.scan_attachments ? 2 : 1) + 1000,
    onFailure: c.on_failure,
    readiness: {
      name: 'clamd',
      async check() {
        const ok = await client.ping();
        return { ok, detail: ok ? `clamd ${client.description} answers PONG` : `clamd ${client.description} does not answer` };
      },
    },
    async run(input, out) {
      const msg = input.message;
      if (!msg) return;
      const start = performance.now();
      const results: ScanResult[] = [];
      if (msg.size > c.stream_max_bytes) {
        results.push({ result: 'unscanned', reason: `message larger than stream_max_bytes (${c.stream_max_bytes})` });
      } else {
        results.push(await client.scanPooled(() => msg.stream() as AsyncIterable<Buffer>, input.signal));
      }
      if (c.scan_attachments) {
        const walk = await walkOf(msg, opts.walkLimits);
        for (const p of walk.parts) {
          // An attached message is walked: its own parts are scanned, not the message again.
          if (!p.attachment || p.contentType.startsWith('message/')) continue;
          if (!p.data) {
            results.push({ result: 'unscanned', reason: `attachment ${p.index} too large to keep for scanning` });
            continue;
          }
          const data = p.data;
          results.push(await client.scanPooled(() => [data], input.signal));
        }
      }
      contentMetrics.avDuration.observe((performance.now() - start) / 1000);
      const viruses = results.flatMap((r) => (r.result === 'virus' ? [r.signature] : []));
      const errors = results.flatMap((r) => (r.result === 'error' ? [r.reason] : []));
      const unscanned = results.flatMap((r) => (r.result === 'unscanned' ? [r.reason] : []));
      const result = viruses.length ? 'virus' : errors.length ? 'error' : unscanned.length ? 'unscanned' : 'clean';
      contentMetrics.avScans.inc({ result });
      // A virus found is a verdict even if another scan failed; an error otherwise is the
      // configured failure outcome (tempfail by default): the runner applies it when we throw.
      if (result === 'error' && c.on_failure !== 'continue') throw new Error(errors[0] ?? 'clamd error');
      out.facts.set('av.result', result);
      out.facts.set('av.virus', viruses.length > 0);
      out.facts.set('av.signature', viruses[0] ?? '');
      out.facts.set('av.signatures', [...new Set(viruses)].slice(0, 50));
      out.facts.set('av.unscanned', result !== 'clean' && result !== 'virus' ? true : unscanned.length > 0 || errors.length > 0);
      out.facts.set('av.unscanned_reason', (unscanned[0] ?? errors[0] ?? '').slice(0, 200));
    },
  };
}
