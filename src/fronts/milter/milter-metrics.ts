// Milter-front counters, on the one registry every mailgate metric lives in. Label values are a
// fixed set (never taken from the peer's bytes).
import { Counter, Gauge } from 'prom-client';
import { registry } from '../../metrics/registry.ts';

const r = [registry];

export const milterMetrics = {
  connections: new Counter({ name: 'mailgate_milter_connections_total', help: 'Milter connections accepted from the MTA', registers: r }),
  connectionsActive: new Gauge({ name: 'mailgate_milter_connections_active', help: 'Milter connections open now', registers: r }),
  connectionsRefused: new Counter({
    name: 'mailgate_milter_connections_refused_total',
    help: 'Milter connections refused at accept (limits.max_connections, shutdown)',
    labelNames: ['reason'] as const,
    registers: r,
  }),
  packetsRejected: new Counter({
    name: 'mailgate_milter_packets_rejected_total',
    help: 'Milter packets that closed the connection: oversized, empty, malformed, unknown-command, sequence, truncated',
    labelNames: ['reason'] as const,
    registers: r,
  }),
};
