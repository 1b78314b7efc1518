// Admin HTTP: /metrics (Prometheus), /healthz (process alive), /readyz (backend and shared state
// reachable: a load balancer takes a gateway out of rotation when it cannot pass mail on).
import http from 'node:http';
import { registry } from './metrics.ts';
import type { Runtime } from '../smtp/runtime.ts';

export interface ReadinessProbe {
  name: string;
  check(): Promise<{ ok: boolean; detail: string }>;
}

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/** Readiness results are cached briefly so a scraping LB does not open a backend session per hit. */
const READY_CACHE_MS = 2000;

export async function startAdmin(
  cfg: { host: string; port: number },
  rt: Runtime,
  probes: readonly ReadinessProbe[],
): Promise<AdminServer> {
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
    const ok = results.every((r) => r.ok) && !rt.draining;
    cached = { at: Date.now(), ok, body: JSON.stringify({ ready: ok, draining: rt.draining, checks: results }) + '\n' };
    return cached;
  };
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (url === '/healthz') return reply(200, 'application/json', '{"ok":true}\n');
    if (url === '/readyz') {
      readiness().then(
        (r) => reply(r.ok ? 200 : 503, 'application/json', r.body),
        (err: Error) => reply(503, 'text/plain', `${err.message}\n`),
      );
      return;
    }
    if (url === '/metrics') {
      registry.metrics().then(
        (m) => reply(200, registry.contentType, m),
        (err: Error) => reply(500, 'text/plain', `${err.message}\n`),
      );
      return;
    }
    reply(404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => resolve());
  });
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : cfg.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
