// The admin listener (Hono on node:http): /metrics, /healthz, /readyz as before, plus the
// quarantine API (/api/quarantine), web console (/quarantine) and digest release links (/q/…).
// Bound to loopback by default; strict security headers on every response.
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Server } from 'node:http';
import pino from 'pino';
import type { Runtime } from '../pipeline/runtime.ts';
import type { AdminConfig } from '../config/admin-schema.ts';
import { adminSchema } from '../config/admin-schema.ts';
import { AdminAuth } from './auth.ts';
import { WindowLimiter } from './rate-limit.ts';
import type { AdminContext, AdminEnv } from './admin-context.ts';
import { healthRoutes, type ReadinessProbe } from './health-routes.ts';
import { quarantineApi } from './quarantine-api.ts';
import { consoleRoutes } from './console-routes.ts';
import { digestRoutes } from './digest-routes.ts';
import { rateLimit, requireAuth } from './guard.ts';
import { digestKey } from '../delivery/quarantine/digest.ts';
import type { QuarantineStore } from '../delivery/quarantine/store.ts';

export type { ReadinessProbe } from './health-routes.ts';

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Every response: nothing may load but our own stylesheet, no scripts at all, no framing, no
 * sniffing, no referrer to other sites, no caching. Message content stays inert even if escaping failed.
 */
export const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export function createAdminApp(rt: Runtime, probes: readonly ReadinessProbe[], cfg: AdminConfig, store: QuarantineStore): Hono<AdminEnv> {
  const app = new Hono<AdminEnv>();
  const q = rt.config.quarantine;
  let key: string | undefined;
  if (q.digest.enabled) {
    try {
      key = digestKey(q.digest, q.dir);
    } catch (err) {
      rt.logger.error({ err: (err as Error).message }, 'digest release links disabled');
    }
  }
  const ctx: AdminContext = {
    store,
    backend: rt.backend,
    auth: new AdminAuth(cfg.auth),
    requests: new WindowLimiter(cfg.rate_limit),
    logins: new WindowLimiter(cfg.login_rate_limit),
    digestKey: key,
    logger: rt.logger ?? pino({ level: 'silent' }),
  };
  app.use('*', async (c, next) => {
    await next();
    c.header('Content-Security-Policy', CSP);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('X-Frame-Options', 'DENY');
    // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on our own form
    // POSTs, and the same-origin check needs the real Origin.
    c.header('Referrer-Policy', 'same-origin');
    c.header('Cross-Origin-Resource-Policy', 'same-origin');
    if (!c.res.headers.has('cache-control')) c.header('Cache-Control', 'no-store');
  });
  healthRoutes(app, rt, probes);
  for (const p of ['/api/*', '/quarantine', '/quarantine/*', '/q/*'])
    app.use(p, bodyLimit({ maxSize: 64 * 1024, onError: (c) => c.text('request body too large\n', 413) }));
  for (const p of ['/api/*', '/quarantine', '/quarantine/*']) app.use(p, rateLimit(ctx));
  app.use('/api/*', requireAuth(ctx, 'api'));
  quarantineApi(app, ctx);
  consoleRoutes(app, ctx);
  digestRoutes(app, ctx);
  app.notFound((c) => c.text('not found: try /metrics, /healthz, /readyz or /quarantine\n', 404));
  app.onError((err, c) => {
    ctx.logger.error({ err: err.message, path: c.req.path }, 'admin request failed');
    return c.text('internal error\n', 500);
  });
  return app;
}

export async function startAdmin(
  cfg: AdminConfig | { host: string; port: number },
  rt: Runtime,
  probes: readonly ReadinessProbe[],
  store: QuarantineStore,
): Promise<AdminServer> {
  const full: AdminConfig = 'rate_limit' in cfg ? cfg : adminSchema.parse(cfg);
  const app = createAdminApp(rt, probes, full, store);
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(full.port, full.host, () => resolve());
  });
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : full.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
