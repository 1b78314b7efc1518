// /metrics (Prometheus), /healthz (process alive), /readyz (backend and shared state reachable: a
// load balancer takes a gateway out of rotation when it cannot pass mail on). Unchanged
// behaviour from the hand-made server: GET/HEAD only, plain bodies, readiness cached briefly.
import type { Hono } from 'hono';
import { registry } from '../metrics/registry.ts';
import { recordReadiness } from './readiness-metrics.ts';
import type { Runtime } from '../pipeline/runtime.ts';
import type { AdminEnv } from './admin-context.ts';

export interface ReadinessProbe {
  name: string;
  check(): Promise<{ ok: boolean; detail: string }>;
}

/** Readiness results are cached briefly so a scraping LB does not open a backend session per hit. */
const READY_CACHE_MS = 2000;

export function healthRoutes(app: Hono<AdminEnv>, rt: Runtime, probes: readonly ReadinessProbe[]): void {
  let cached: { at: number; body: string; ok: boolean } | undefined;
  // Concurrent /readyz requests share one probe run (each run may open a backend session).
  let inFlight: Promise<{ at: number; body: string; ok: boolean }> | undefined;
  const readiness = () => {
    if (cached && Date.now() - cached.at < READY_CACHE_MS) return Promise.resolve(cached);
    inFlight ??= probeAll().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  const probeAll = async () => {
    const results = await Promise.all(
      probes.map(async (p) => {
        try {
          return { name: p.name, ...(await p.check()) };
        } catch (err) {
          return { name: p.name, ok: false, detail: (err as Error).message };
        }
      }),
    );
    recordReadiness(results);
    const ok = results.every((r) => r.ok) && !rt.draining;
    cached = { at: Date.now(), ok, body: JSON.stringify({ ready: ok, draining: rt.draining, checks: results }) + '\n' };
    return cached;
  };
  const text = (body: string, status: number, type: string) => new Response(body, { status, headers: { 'content-type': type } });
  for (const path of ['/healthz', '/readyz', '/metrics']) {
    app.on(['GET', 'HEAD'], path, async () => {
      if (path === '/healthz') return text('{"ok":true}\n', 200, 'application/json');
      if (path === '/readyz') {
        try {
          const r = await readiness();
          return text(r.body, r.ok ? 200 : 503, 'application/json');
        } catch (err) {
          return text(`${(err as Error).message}\n`, 503, 'text/plain');
        }
      }
      try {
        // Refresh mailgate_readiness_up for the next scrape; never wait for a (possibly hung) probe.
        readiness().catch(() => undefined);
        return text(await registry.metrics(), 200, registry.contentType);
      } catch (err) {
        return text(`${(err as Error).message}\n`, 500, 'text/plain');
      }
    });
    app.all(path, () => text('method not allowed\n', 405, 'text/plain'));
  }
}
