// The quarantine JSON API on the admin listener: list with filters and paging, one entry (with
// a safe text view), its raw bytes as a download, release and delete. Behind requireAuth.
import { Readable } from 'node:stream';
import type { Hono } from 'hono';
import type { ListFilter } from '../delivery/quarantine/entry.ts';
import { releaseEntry, type ReleaseResult } from '../delivery/release.ts';
import { parseDuration } from '../config/durations.ts';
import { field, type AdminContext, type AdminEnv } from './admin-context.ts';
import { MAX_PARSE, viewMessage } from './message-view.ts';

export class FilterError extends Error {}

/** Query parameters (the CLI's option names, `_` for `-`) → a ListFilter; bad values are errors. */
export function filterFromQuery(q: Record<string, string | undefined>, defaultLimit = 50): ListFilter {
  const f: ListFilter = { limit: defaultLimit };
  const str = (k: string) => {
    const v = q[k]?.trim();
    return v ? v.slice(0, 320) : undefined;
  };
  const numOf = (k: string) => {
    const v = str(k);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new FilterError(`${k}: expected a number`);
    return n;
  };
  const when = (k: string) => {
    const v = str(k);
    if (v === undefined) return undefined;
    const age = parseDuration(v);
    if (age !== undefined && !v.includes('-')) return new Date(Date.now() - age).toISOString();
    const t = Date.parse(v);
    if (!Number.isFinite(t)) throw new FilterError(`${k}: expected a date or an age like 7d`);
    return new Date(t).toISOString();
  };
  const set = <K extends keyof ListFilter>(k: K, v: ListFilter[K] | undefined) => {
    if (v !== undefined) f[k] = v;
  };
  set('rcpt', str('rcpt'));
  set('from', str('from'));
  set('rule', str('rule'));
  set('reason', str('reason'));
  set('since', when('since'));
  set('until', when('until'));
  set('minScore', numOf('min_score'));
  set('maxScore', numOf('max_score'));
  const status = str('status');
  if (status !== undefined) {
    if (status !== 'held' && status !== 'released' && status !== 'all') throw new FilterError('status: expected held, released or all');
    f.status = status;
  }
  const limit = numOf('limit');
  if (limit !== undefined) f.limit = Math.max(1, Math.min(500, Math.floor(limit)));
  const offset = numOf('offset');
  if (offset !== undefined) f.offset = Math.max(0, Math.floor(offset));
  return f;
}

export function releaseStatus(r: ReleaseResult): 200 | 404 | 409 | 502 {
  return r.status === 'released' ? 200 : r.status === 'missing' ? 404 : r.status === 'failed' ? 502 : 409;
}

/** `a@x, b@y` → addresses (bounded; empty → undefined = the original recipients). */
export function recipientsOf(v: string | undefined): string[] | undefined {
  if (!v) return undefined;
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .slice(0, 100);
  return list.length ? list : undefined;
}

export function quarantineApi(app: Hono<AdminEnv>, ctx: AdminContext): void {
  app.get('/api/quarantine', async (c) => {
    let f: ListFilter;
    try {
      f = filterFromQuery(c.req.query());
    } catch (err) {
      return c.json({ error: (err as Error).message }, 400);
    }
    const { rows, total } = await ctx.store.list(f);
    return c.json({ total, limit: f.limit, offset: f.offset ?? 0, rows });
  });
  app.get('/api/quarantine/:id', async (c) => {
    const e = await ctx.store.get(c.req.param('id'));
    if (!e) return c.json({ error: 'no such message' }, 404);
    const view = await viewMessage(await ctx.store.head(e.row, MAX_PARSE), e.meta.bytes);
    return c.json({ row: e.row, meta: e.meta, view });
  });
  app.get('/api/quarantine/:id/raw', async (c) => {
    const e = await ctx.store.get(c.req.param('id'));
    if (!e) return c.json({ error: 'no such message' }, 404);
    // A download, never rendered: octet-stream + attachment + nosniff (set globally).
    return c.body(Readable.toWeb(ctx.store.stream(e.row)) as ReadableStream<Uint8Array>, 200, {
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename="${e.row.id}.eml"`,
      'content-length': String(e.meta.bytes),
    });
  });
  app.post('/api/quarantine/:id/release', async (c) => {
    const to = recipientsOf(await field(c, 'to'));
    const by = c.get('principal').name;
    const r = await releaseEntry(ctx.store, ctx.backend, c.req.param('id'), { by, ...(to ? { to } : {}) });
    return c.json(r, releaseStatus(r));
  });
  const del = async (c: import('./admin-context.ts').AdminCtx) => {
    const done = await ctx.store.delete([c.req.param('id') ?? ''], c.get('principal').name);
    return done.length ? c.json({ deleted: done[0] }) : c.json({ error: 'no such message' }, 404);
  };
  app.post('/api/quarantine/:id/delete', del);
  app.delete('/api/quarantine/:id', del);
}
