// The quarantine's Prometheus metrics, registered on mailgate's one registry: how much is held
// (gauges, read from the index at scrape time) and what was done to it (counter by action).
import { Counter, Gauge } from 'prom-client';
import { registry } from '../../metrics/registry.ts';

export type QuarantineAction = 'quarantine' | 'release' | 'delete' | 'expire' | 'refused_quota' | 'evict';

/** The store whose totals the gauges report (the running gateway's; last one opened wins). */
let source: (() => Promise<{ messages: number; bytes: number }>) | undefined;

/** Makes the gauges read `fn`; the returned function undoes it (if nobody replaced it since). */
export function reportTotalsFrom(fn: () => Promise<{ messages: number; bytes: number }>): () => void {
  source = fn;
  return () => {
    if (source === fn) source = undefined;
  };
}

async function totals(): Promise<{ messages: number; bytes: number } | undefined> {
  try {
    return await source?.();
  } catch {
    return undefined;
  }
}

export const quarantineMetrics = {
  messages: new Gauge({
    name: 'mailgate_quarantine_messages',
    help: 'Messages held in the quarantine (including released ones not yet expired)',
    registers: [registry],
    async collect() {
      const t = await totals();
      if (t) this.set(t.messages);
    },
  }),
  bytes: new Gauge({
    name: 'mailgate_quarantine_bytes',
    help: 'Bytes of message data held in the quarantine',
    registers: [registry],
    async collect() {
      const t = await totals();
      if (t) this.set(t.bytes);
    },
  }),
  actions: new Counter({
    name: 'mailgate_quarantine_actions_total',
    help: 'Quarantine actions: quarantine, release, delete, expire, evict, refused_quota',
    labelNames: ['action'] as const,
    registers: [registry],
  }),
};

export function countAction(action: QuarantineAction, n = 1): void {
  if (n > 0) quarantineMetrics.actions.inc({ action }, n);
}
