// Metrics of the content checks (scanners), registered on the shared mailgate registry; label
// values are fixed sets so cardinality stays bounded.
import { Counter } from 'prom-client';
import { Histogram } from '../../metrics/histogram.ts';
import { registry } from '../../metrics/registry.ts';

export const contentMetrics = {
  /** result: clean, virus, unscanned, error. */
  avScans: new Counter({
    name: 'mailgate_av_scans_total',
    help: 'clamd scans by result (clean, virus, unscanned, error)',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  avDuration: new Histogram({
    name: 'mailgate_av_scan_duration_seconds',
    help: 'Time to scan one message with clamd (all its streams)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  }),
  /** scanner: rspamd, spamassassin, hook; result: ok, error, skipped. */
  scannerCalls: new Counter({
    name: 'mailgate_content_scanner_calls_total',
    help: 'Calls to external content scanners (rspamd, spamassassin, hook) by result (ok, error, skipped)',
    labelNames: ['scanner', 'result'] as const,
    registers: [registry],
  }),
};
