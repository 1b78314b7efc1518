// The /readyz probes as a metric, so Prometheus can alert on "backend down" (MailgateBackendDown):
// mailgate_readiness_up{check="backend"|"store"|…} is 1 or 0 from the latest probe run.
import { Gauge } from 'prom-client';
import { registry } from '../metrics/registry.ts';

/**
 * Labelled by probe name (bounded: the gateway's own probes). A process that never runs the
 * probes (a node:cluster worker without the admin server) exports no series at all, rather than
 * a 0 that would look like an outage.
 */
export const readinessUp = new Gauge({
  name: 'mailgate_readiness_up',
  help: 'Readiness probes (as in /readyz): 1 if the check passed at its last run, else 0',
  labelNames: ['check'] as const,
  registers: [registry],
});

export function recordReadiness(results: ReadonlyArray<{ name: string; ok: boolean }>): void {
  for (const r of results) readinessUp.set({ check: r.name }, r.ok ? 1 : 0);
}
