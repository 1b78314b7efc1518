// The backscatter metric, on mailgate's one registry: what BATV verification and the bounce
// heuristics concluded, and what the outbound listener did. `result` takes only the fixed values
// of BACKSCATTER_RESULTS (never client input), so the label set stays bounded.
import { Counter } from 'prom-client';
import { registry } from '../../metrics/registry.ts';

export const BACKSCATTER_RESULTS = [
  // BATV at RCPT (one per judged recipient)
  'batv-valid',
  'batv-missing',
  'batv-invalid',
  'batv-expired',
  // The decision on a bounce or auto-reply at end of DATA (backscatter.reason)
  'recorded-outbound',
  'our-dkim',
  'multi-rcpt',
  'foreign-msgid',
  'unsigned-original',
  'bounce-rate',
  'no-evidence',
  // The outbound listener
  'outbound-signed',
  'outbound-relayed',
  'outbound-refused-client',
] as const;
export type BackscatterResult = (typeof BACKSCATTER_RESULTS)[number];

const counter = new Counter({
  name: 'mailgate_backscatter_total',
  help: 'Backscatter protection outcomes: BATV results per recipient, bounce decisions per message, outbound listener actions',
  labelNames: ['result'] as const,
  registers: [registry],
});

export function countBackscatter(result: BackscatterResult): void {
  counter.inc({ result });
}
