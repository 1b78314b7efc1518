// The `admin:` key: where the admin listener binds (loopback by default) and who may use the
// quarantine API and console (bearer tokens, or users with scrypt password hashes).
import { z } from 'zod';
import { durationSchema, rateSchema } from './durations.ts';

export const adminUserSchema = z.strictObject({
  name: z.string().min(1).max(64),
  /** `scrypt$N$r$p$salt$hash` (base64), made by `mailgate quarantine hash-password`. */
  password: z.string().startsWith('scrypt$', 'expected a hash made by `mailgate quarantine hash-password`'),
});

export const adminAuthSchema = z.strictObject({
  /** Bearer tokens for the API (`Authorization: Bearer …`); at least 32 characters each. */
  tokens: z.array(z.string().min(32, 'a token needs at least 32 characters')).default([]),
  users: z.array(adminUserSchema).default([]),
  /** How long a console login lasts. */
  session_ttl: durationSchema.default(8 * 3_600_000),
});

export const adminSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(9025),
  /** Without it the quarantine API and console are off (every call 401); /metrics etc. stay open. */
  auth: adminAuthSchema.optional(),
  /** Requests per client address to the quarantine API and console. */
  rate_limit: rateSchema.default({ count: 300, periodMs: 60_000 }),
  /** Failed logins per client address. */
  login_rate_limit: rateSchema.default({ count: 10, periodMs: 60_000 }),
});

export type AdminConfig = z.output<typeof adminSchema>;
export type AdminAuthConfig = z.output<typeof adminAuthSchema>;

/**
 * The `admin:` key: the settings, or `false` to disable the listener. Not a z.union: a union
 * reports "admin: Invalid input" for a typo deep inside; this reports the exact key.
 */
export const adminKeySchema = z
  .unknown()
  .optional()
  .transform((v, ctx): AdminConfig | false => {
    if (v === false) return false;
    const r = adminSchema.safeParse(v ?? {});
    if (r.success) return r.data;
    for (const i of r.error.issues) ctx.addIssue({ code: 'custom', message: i.message, path: i.path as PropertyKey[] as (string | number)[] });
    return z.NEVER;
  });
