// What the admin routes share: the quarantine store, the delivery backend, authentication, rate
// limiters and the logger. Built once per admin server; the Hono env types live here too.
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { Backend } from '../delivery/backend.ts';
import type { QuarantineStore } from '../delivery/quarantine/store.ts';
import type { AdminAuth, Principal } from './auth.ts';
import type { WindowLimiter } from './rate-limit.ts';

export interface AdminContext {
  store: QuarantineStore;
  backend: Backend;
  auth: AdminAuth;
  requests: WindowLimiter;
  logins: WindowLimiter;
  /** HMAC key of digest release links, when digests are configured. */
  digestKey: string | undefined;
  logger: Logger;
}

export type AdminEnv = { Bindings: HttpBindings; Variables: { principal: Principal } };
export type AdminCtx = Context<AdminEnv>;

export function clientIp(c: AdminCtx): string {
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

/** A form field or JSON property as one bounded string. */
export async function field(c: AdminCtx, name: string): Promise<string | undefined> {
  const type = c.req.header('content-type') ?? '';
  if (type.startsWith('application/json')) {
    const body = (await c.req.json().catch(() => ({}))) as Record<string, unknown>;
    const v = body[name];
    return typeof v === 'string'
      ? v.slice(0, 4096)
      : Array.isArray(v)
        ? v
            .filter((x) => typeof x === 'string')
            .join(',')
            .slice(0, 4096)
        : undefined;
  }
  if (type.startsWith('application/x-www-form-urlencoded') || type.startsWith('multipart/form-data')) {
    const body = await c.req.parseBody();
    const v = body[name];
    return typeof v === 'string' ? v.slice(0, 4096) : undefined;
  }
  return undefined;
}
