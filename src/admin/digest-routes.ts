// Release links from digests: GET shows a confirmation (mail scanners prefetch links; a GET
// never releases), POST verifies the HMAC signature and expiry, spends the single-use nonce
// and releases the message to that recipient only. No login: the signed link is the credential.
import type { Hono } from 'hono';
import { verifyToken } from '../delivery/quarantine/digest-token.ts';
import { releaseEntry } from '../delivery/release.ts';
import { sameOrigin } from './auth.ts';
import type { AdminContext, AdminCtx, AdminEnv } from './admin-context.ts';
import { digestConfirmPage, resultPage } from './console-views.ts';
import { rateLimit } from './guard.ts';

export function digestRoutes(app: Hono<AdminEnv>, ctx: AdminContext): void {
  app.use('/q/*', rateLimit(ctx));
  const check = (c: AdminCtx) => {
    if (!ctx.digestKey) return { error: c.html(resultPage({ title: 'Not available', message: 'Digest links are not configured here.', ok: false }), 404) };
    const v = verifyToken(ctx.digestKey, c.req.param('token') ?? '');
    if (!v.ok) {
      ctx.logger.warn({ why: v.why }, 'digest release link refused');
      const status = v.why === 'expired' ? 410 : 403;
      return {
        error: c.html(
          resultPage({ title: 'Link refused', message: v.why === 'expired' ? 'This release link has expired.' : 'This release link is not valid.', ok: false }),
          status,
        ),
      };
    }
    return { payload: v.payload };
  };
  app.get('/q/release/:token', async (c) => {
    const r = check(c);
    if (r.error) return r.error;
    const e = await ctx.store.get(r.payload.id);
    if (!e) return c.html(resultPage({ title: 'Not found', message: 'This message is no longer in quarantine.', ok: false }), 404);
    return c.html(digestConfirmPage({ token: c.req.param('token'), row: e.row, rcpt: r.payload.rcpt }));
  });
  app.post('/q/release/:token', async (c) => {
    const r = check(c);
    if (r.error) return r.error;
    if (!sameOrigin(c.req.header('origin'), c.req.header('referer'), c.req.header('host'))) {
      return c.html(resultPage({ title: 'Refused', message: 'Cross-site request refused.', ok: false }), 403);
    }
    const p = r.payload;
    if (!(await (await ctx.store.index()).useToken(p.nonce, new Date(p.exp).toISOString()))) {
      return c.html(resultPage({ title: 'Link used', message: 'This release link was already used.', ok: false }), 410);
    }
    const res = await releaseEntry(ctx.store, ctx.backend, p.id, { by: `digest:${p.rcpt}`, to: [p.rcpt] });
    const ok = res.status === 'released';
    const message = ok
      ? 'Released: the message is on its way to your mailbox.'
      : res.status === 'already'
        ? 'This message was already released.'
        : res.status === 'missing'
          ? 'This message is no longer in quarantine.'
          : `The release failed (${res.reply ?? 'unknown'}); please contact your postmaster.`;
    return c.html(
      resultPage({ title: ok ? 'Released' : 'Not released', message, ok }),
      ok ? 200 : res.status === 'missing' ? 404 : res.status === 'failed' ? 502 : 409,
    );
  });
}
