// Every Prometheus metric mailgate exports, in one place, prefixed `mailgate_`, with bounded label
// values (codes are grouped, rule and check names come from config, never from client input).
import cluster from 'node:cluster';
import { AggregatorRegistry, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { Counter } from './counter.ts';
import { Histogram } from './histogram.ts';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });
// With `workers` > 1 the primary serves /metrics summed over the workers (prom-client's cluster
// aggregation asks each worker for this registry over IPC).
// Constructing an AggregatorRegistry is what installs the worker's IPC listener.
if (cluster.isWorker) {
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
}

const r = [registry];

export const metrics = {
  connectionsTotal: new Counter({ name: 'mailgate_connections_total', help: 'SMTP connections accepted', registers: r }),
  connectionsActive: new Gauge({ name: 'mailgate_connections_active', help: 'SMTP connections open now', registers: r }),
  connectionsRefused: new Counter({
    name: 'mailgate_connections_refused_total',
    help: 'Connections refused before the greeting',
    labelNames: ['reason'] as const,
    registers: r,
  }),
  messagesTotal: new Counter({
    name: 'mailgate_messages_total',
    help: 'Messages (DATA transactions) by final action and front (smtp, milter)',
    labelNames: ['action', 'front'] as const,
    registers: r,
  }),
  messageDuration: new Histogram({
    name: 'mailgate_message_duration_seconds',
    help: 'From end of DATA to the reply sent to the client, by front (smtp, milter)',
    labelNames: ['front'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: r,
  }),
  refusals: new Counter({
    name: 'mailgate_refusals_total',
    help: 'Commands refused by policy or checks, by SMTP stage, reply class and front (smtp, milter)',
    labelNames: ['stage', 'class', 'front'] as const,
    registers: r,
  }),
  backendReplies: new Counter({
    name: 'mailgate_backend_replies_total',
    help: 'Replies from the backend MTA by code',
    labelNames: ['code'] as const,
    registers: r,
  }),
  checkDuration: new Histogram({
    name: 'mailgate_check_duration_seconds',
    help: 'Time each check took',
    labelNames: ['check'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: r,
  }),
  checkFailures: new Counter({
    name: 'mailgate_check_failures_total',
    help: 'Checks that threw or timed out',
    labelNames: ['check', 'reason'] as const,
    registers: r,
  }),
  // Rules engine (src/rules/). Rule names come from the rules files (bounded by the postmaster).
  rulesLoaded: new Gauge({ name: 'mailgate_rules_loaded', help: 'Rules in force (enabled rules of the last good load)', registers: r }),
  rulesReloadErrors: new Counter({
    name: 'mailgate_rules_reload_errors_total',
    help: 'Rules (or list file) reloads refused because of errors; the previous rules stay in force',
    registers: r,
  }),
  rulesLastReloadSuccess: new Gauge({
    name: 'mailgate_rules_last_reload_success',
    help: '1 if the last rules reload succeeded, 0 if it failed (old rules still in force)',
    registers: r,
  }),
  rulesLastReloadTime: new Gauge({
    name: 'mailgate_rules_last_reload_timestamp_seconds',
    help: 'When the rules in force were loaded (Unix time)',
    registers: r,
  }),
  ruleHits: new Counter({
    name: 'mailgate_rule_hits_total',
    help: 'Times each rule fired (a rcpt rule once per recipient)',
    labelNames: ['rule'] as const,
    registers: r,
  }),
  dnsblHits: new Counter({
    name: 'mailgate_dnsbl_hits_total',
    help: 'DNSBL/DNSWL listings found, by list name (from the dnsbl: section)',
    labelNames: ['list'] as const,
    registers: r,
  }),
  // DNS (src/dns/resolver.ts). `type` is one of the record types the resolver supports.
  dnsQueries: new Counter({
    name: 'mailgate_dns_queries_total',
    help: 'DNS lookups sent to the network (cache misses), by record type and outcome',
    labelNames: ['type', 'result'] as const,
    registers: r,
  }),
  dnsDuration: new Histogram({
    name: 'mailgate_dns_duration_seconds',
    help: 'Time a DNS lookup took on the network, including retries and TCP fallback',
    labelNames: ['type'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: r,
  }),
  dnsCache: new Counter({
    name: 'mailgate_dns_cache_total',
    help: 'DNS lookups answered from the in-process cache (hit, negative_hit) or not (miss)',
    labelNames: ['result'] as const,
    registers: r,
  }),
  // Sender authentication (src/checks/auth.ts): one increment per method per message or MAIL FROM.
  authResults: new Counter({
    name: 'mailgate_auth_results_total',
    help: 'SPF, DKIM (best signature), DMARC and ARC results',
    labelNames: ['method', 'result'] as const,
    registers: r,
  }),
  // Shared store (src/store/) and the limits built on it (src/checks/rate-limit.ts, greylist.ts,
  // concurrency.ts). Limit names come from rules files; `op` and `reason` are fixed sets.
  // Registered on first use, i.e. only when a Redis is configured: an always-exported
  // "mailgate_redis_up 0" made alerts fire on gateways without Redis (issue 14, item 11).
  redisUp: lazyGauge(new Gauge({ name: 'mailgate_redis_up', help: '1 when the Redis connection is ready, else 0', registers: [] })),
  redisErrors: new Counter({
    name: 'mailgate_redis_errors_total',
    help: 'Redis calls that failed: reason = timeout | down (not connected, circuit open) | error',
    labelNames: ['reason'] as const,
    registers: r,
  }),
  redisCommandDuration: new Histogram({
    name: 'mailgate_redis_command_duration_seconds',
    help: 'Round-trip time of Redis calls (one call may carry several limits)',
    labelNames: ['op'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: r,
  }),
  storeFallback: new Counter({
    name: 'mailgate_store_fallback_total',
    help: 'Operations served by the in-process store because Redis was unavailable (fail_open)',
    labelNames: ['op'] as const,
    registers: r,
  }),
  rateLimitExceeded: new Counter({
    name: 'mailgate_ratelimit_exceeded_total',
    help: 'Events denied by a rate limit, by limit name',
    labelNames: ['limit'] as const,
    registers: r,
  }),
  concurrencyExceeded: new Counter({
    name: 'mailgate_concurrency_exceeded_total',
    help: 'Connections over a shared concurrency limit, by limit name',
    labelNames: ['limit'] as const,
    registers: r,
  }),
  greylistTotal: new Counter({
    name: 'mailgate_greylist_total',
    help: 'Greylisting decisions: new | early | passed | allowed | skipped | unavailable',
    labelNames: ['result'] as const,
    registers: r,
  }),
};

/** A gauge that joins the registry when first set. */
function lazyGauge(g: Gauge): { set(v: number): void } {
  let registered = false;
  return {
    set(v: number) {
      if (!registered) {
        registry.registerMetric(g);
        registered = true;
      }
      g.set(v);
    },
  };
}

/** Backend reply codes as a bounded label: the code itself for known classes, else "other". */
export function codeLabel(code: number): string {
  return code >= 200 && code < 600 ? String(code) : 'other';
}
