// The gate in front of the quarantine API and console: rate limit per client address, then
// credentials (bearer token or console session; none → 401), then for every state-changing
// call a same-origin check and the session's CSRF token (bearer calls are exempt: a browser
// never adds that header on its own).
import type { MiddlewareHandler } from 'hono';
import { randomBytes } from 'node:crypto';
import { getCookie, setCookie } from 'hono/cookie';
import { SESSION_COOKIE, sameOrigin } from './auth.ts';
import { clientIp, field, type AdminContext, type AdminCtx, type AdminEnv } from './admin-context.ts';
import { loginPage } from './console-views.ts';

export const LOGIN_COOKIE = 'mg_login';

/** The login form; its CSRF token is bound to a random pre-login cookie (login CSRF). */
export function showLogin(ctx: AdminContext, c: AdminCtx, status: 200 | 401 | 403 | 429, error?: string): Response | Promise<Response> {
  const nonce = randomBytes(16).toString('base64url');
  setCookie(c, LOGIN_COOKIE, nonce, { httpOnly: true, sameSite: 'Strict', path: '/quarantine' });
  return c.html(loginPage(ctx.auth.loginCsrf(nonce), error), status);
}

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
      return showLogin(ctx, c, 401, ctx.auth.enabled ? undefined : 'The console is disabled: configure admin.auth.');
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
