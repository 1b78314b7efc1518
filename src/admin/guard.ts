// The gate in front of the quarantine API and console: rate limit per client address, then
// credentials (bearer token or console session; none → 401), then for every state-changing
// call a same-origin check and the session's CSRF token (bearer calls are exempt: a browser
// never adds that header on its own).
import type { MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import { SESSION_COOKIE, sameOrigin } from './auth.ts';
import { clientIp, field, type AdminContext, type AdminEnv } from './admin-context.ts';
import { loginPage } from './console-views.ts';

export function rateLimit(ctx: AdminContext): MiddlewareHandler<AdminEnv> {
  return async (c, next) => {
    const wait = ctx.requests.hit(clientIp(c));
    if (wait) {
      c.header('Retry-After', String(wait));
      return c.text('too many requests\n', 429);
    }
    await next();
  };
}

export function requireAuth(ctx: AdminContext, kind: 'api' | 'console'): MiddlewareHandler<AdminEnv> {
  return async (c, next) => {
    const p = ctx.auth.bearer(c.req.header('authorization')) ?? ctx.auth.session(getCookie(c, SESSION_COOKIE));
    if (!p) {
      if (kind === 'api') {
        c.header('WWW-Authenticate', 'Bearer realm="mailgate"');
        const why = ctx.auth.enabled ? 'authentication required' : 'quarantine API disabled: configure admin.auth (docs/quarantine.md)';
        return c.json({ error: why }, 401);
      }
      return c.html(loginPage(''), 401);
    }
    const m = c.req.method;
    if (m !== 'GET' && m !== 'HEAD') {
      const host = c.req.header('host');
      const origin = c.req.header('origin');
      const referer = c.req.header('referer');
      const same = sameOrigin(origin, referer, host);
      if (p.via === 'session') {
        const token = c.req.header('x-csrf-token') ?? (await field(c, 'csrf'));
        if (!same || !ctx.auth.checkCsrf(p, token)) {
          ctx.logger.warn({ ip: clientIp(c), path: c.req.path, origin }, 'admin: cross-site or tokenless request refused');
          return kind === 'api' ? c.json({ error: 'CSRF check failed' }, 403) : c.text('Forbidden: cross-site request refused (CSRF)\n', 403);
        }
      }
    }
    c.set('principal', p);
    await next();
  };
}
