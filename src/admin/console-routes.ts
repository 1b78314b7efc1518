// The quarantine web console: login/logout, the filtered list, one message (safe text view),
// release and delete — plain HTML forms, no script. Behind requireAuth except login and CSS.
import type { Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { releaseEntry } from '../delivery/release.ts';
import { SESSION_COOKIE, sameOrigin } from './auth.ts';
import { clientIp, field, type AdminContext, type AdminCtx, type AdminEnv } from './admin-context.ts';
import { CONSOLE_CSS, listPage, messagePage, resultPage } from './console-views.ts';
import { FilterError, filterFromQuery, recipientsOf, releaseStatus } from './quarantine-api.ts';
import { LOGIN_COOKIE, requireAuth, showLogin } from './guard.ts';
import { MAX_PARSE, viewMessage } from './message-view.ts';

function csrfOf(ctx: AdminContext, c: AdminCtx): string {
  const p = c.get('principal');
  return p.session ? ctx.auth.csrfFor(p.session) : '';
}

export function consoleRoutes(app: Hono<AdminEnv>, ctx: AdminContext): void {
  app.get('/quarantine/console.css', (c) => c.body(CONSOLE_CSS, 200, { 'content-type': 'text/css; charset=utf-8' }));

  const login = (c: AdminCtx, status: 200 | 401 | 403 | 429, error?: string) => showLogin(ctx, c, status, error);
  app.get('/quarantine/login', (c) => login(c, 200));
  app.post('/quarantine/login', async (c) => {
    const ip = clientIp(c);
    const wait = ctx.logins.blocked(ip);
    if (wait) {
      c.header('Retry-After', String(wait));
      return login(c, 429, 'Too many failed logins; try again later.');
    }
    const nonce = getCookie(c, LOGIN_COOKIE);
    const csrf = await field(c, 'csrf');
    if (!sameOrigin(c.req.header('origin'), c.req.header('referer'), c.req.header('host')) || !nonce || csrf !== ctx.auth.loginCsrf(nonce)) {
      return login(c, 403, 'The login form expired; please try again.');
    }
    const session = await ctx.auth.login((await field(c, 'user')) ?? '', (await field(c, 'password')) ?? '');
    if (!session) {
      ctx.logins.hit(ip);
      ctx.logger.warn({ ip }, 'admin: failed console login');
      return login(c, 401, 'Wrong user or password.');
    }
    deleteCookie(c, LOGIN_COOKIE, { path: '/quarantine' });
    setCookie(c, SESSION_COOKIE, session, {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
      secure: new URL(c.req.url).protocol === 'https:',
      maxAge: Math.floor((ctx.auth.cfg?.session_ttl ?? 0) / 1000),
    });
    return c.redirect('/quarantine', 303);
  });

  app.use('/quarantine', requireAuth(ctx, 'console'));
  app.use('/quarantine/m/*', requireAuth(ctx, 'console'));
  app.use('/quarantine/logout', requireAuth(ctx, 'console'));

  app.post('/quarantine/logout', (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    return c.redirect('/quarantine/login', 303);
  });

  app.get('/quarantine', async (c) => {
    const q = c.req.query();
    try {
      const filter = filterFromQuery(q);
      const { rows, total } = await ctx.store.list(filter);
      return c.html(listPage({ rows, total, query: q, filter, csrf: csrfOf(ctx, c), user: c.get('principal').name }));
    } catch (err) {
      if (!(err instanceof FilterError)) throw err;
      return c.html(resultPage({ title: 'Bad filter', message: err.message, ok: false, back: '/quarantine', csrf: csrfOf(ctx, c) }), 400);
    }
  });

  app.get('/quarantine/m/:id', async (c) => {
    const e = await ctx.store.get(c.req.param('id'));
    if (!e)
      return c.html(
        resultPage({ title: 'Not found', message: 'No such message (expired or deleted).', ok: false, back: '/quarantine', csrf: csrfOf(ctx, c) }),
        404,
      );
    const view = await viewMessage(await ctx.store.head(e.row, MAX_PARSE), e.meta.bytes);
    return c.html(messagePage({ row: e.row, meta: e.meta, view, csrf: csrfOf(ctx, c) }));
  });

  app.post('/quarantine/m/:id/release', async (c) => {
    const id = c.req.param('id');
    const to = recipientsOf(await field(c, 'to'));
    const r = await releaseEntry(ctx.store, ctx.backend, id, { by: c.get('principal').name, ...(to ? { to } : {}) });
    const message =
      r.status === 'released'
        ? `Released by ${r.releasedBy}. Backend replied: ${r.reply}`
        : r.status === 'already'
          ? `Already released at ${r.releasedAt} by ${r.releasedBy} (backend replied: ${r.reply}). Nothing was sent again.`
          : r.status === 'busy'
            ? 'A release of this message is in progress.'
            : r.status === 'missing'
              ? 'No such message.'
              : `Release failed: ${r.reply}`;
    return c.html(
      resultPage({
        title: r.status === 'released' ? 'Released' : r.status === 'already' ? 'Already released' : 'Not released',
        message,
        ok: r.status === 'released',
        back: `/quarantine/m/${id}`,
        csrf: csrfOf(ctx, c),
        result: r,
      }),
      releaseStatus(r),
    );
  });

  app.post('/quarantine/m/:id/delete', async (c) => {
    const done = await ctx.store.delete([c.req.param('id')], c.get('principal').name);
    return c.html(
      resultPage({
        title: done.length ? 'Deleted' : 'Not found',
        message: done.length ? `Deleted ${done[0]}.` : 'No such message.',
        ok: done.length > 0,
        back: '/quarantine',
        csrf: csrfOf(ctx, c),
      }),
      done.length ? 200 : 404,
    );
  });
}
