// The `quarantine:` key of mailgate.yaml: where entries live, how long they are kept, how much
// they may use, which index holds their metadata, and the optional per-recipient digests.
import './zod-jitless.ts';
import { z } from 'zod';
import { durationSchema } from './durations.ts';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
};

/** `500MB`, `10GB`, `1048576`: bytes (binary units). Parsed with a loop, not a regex on input. */
export function parseSize(text: string): number | undefined {
  const s = text.trim().toLowerCase();
  if (s.length === 0 || s.length > 32) return undefined;
  let i = 0;
  while (i < s.length && (((s[i] as string) >= '0' && (s[i] as string) <= '9') || s[i] === '.')) i++;
  const num = Number(s.slice(0, i));
  const unit = SIZE_UNITS[s.slice(i).trim()];
  if (i === 0 || !Number.isFinite(num) || unit === undefined) return undefined;
  const n = Math.round(num * unit);
  return n > 0 ? n : undefined;
}

export const sizeSchema = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : parseSize(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a size like 500MB, 10GB or a number of bytes (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return n;
});

export const digestDomainSchema = z.strictObject({
  /** Send digests to recipients of this domain. */
  enabled: z.boolean().default(true),
  /** Sender of the digest mail for this domain (default: the digest's `from`). */
  from: z.string().optional(),
});

export const digestSchema = z.strictObject({
  /** Off by default: a digest is sent only for domains listed in `domains` (or all with `"*"`). */
  enabled: z.boolean().default(false),
  /** HMAC-SHA256 key for the release links (at least 32 characters); or `key_file`. */
  hmac_key: z.string().min(32).optional(),
  key_file: z.string().optional(),
  /** Where the links point: the admin listener as users reach it, e.g. https://mx.example.test:9025 */
  link_base_url: z.string().url().optional(),
  /** A release link stops working after this long (and after one use). */
  link_ttl: durationSchema.default(7 * 86_400_000),
  /** How often digests are sent by `serve` (`0` = never by serve; use `mailgate quarantine digest`). */
  interval: z.union([durationSchema, z.literal(0)]).default(86_400_000),
  from: z.string().default('postmaster'),
  subject: z.string().default('Quarantine digest: {count} message(s) held for you'),
  /** Per-domain settings; `"*"` applies to every domain not listed. */
  domains: z.record(z.string(), digestDomainSchema).default({}),
});

export const quarantineIndexSchema = z.discriminatedUnion('backend', [
  z.strictObject({
    backend: z.literal('sqlite'),
    /** The index file (default: index.sqlite inside `dir`). */
    file: z.string().optional(),
  }),
  z.strictObject({
    backend: z.literal('postgres'),
    /** postgres://user:password@host:port/db — shared by every gateway instance. */
    url: z.string().min(1),
    /** Schema (namespace) for the tables, so several quarantines can share a database. */
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier')
      .default('mailgate'),
  }),
]);

export const quarantineSchema = z.strictObject({
  /** Message files; with the postgres index this is a volume every instance mounts. */
  dir: z.string().default('var/quarantine'),
  /** Entries older than this are deleted by the periodic expiry. */
  retention: durationSchema.default(30 * 86_400_000),
  /** How often expiry runs in `serve`. */
  expiry_interval: durationSchema.default(3_600_000),
  quota: z
    .strictObject({
      /** Total bytes of held messages; unset = no limit. */
      max_bytes: sizeSchema.optional(),
      /** Number of held messages; unset = no limit. */
      max_messages: z.number().int().positive().optional(),
      /**
       * What a new quarantine gets once the quota is reached: `tempfail` (452 4.3.1, the client
       * retries later), `reject` (552 5.3.4) or `evict_oldest` (make room by expiring the oldest).
       */
      outcome: z.enum(['tempfail', 'reject', 'evict_oldest']).default('tempfail'),
    })
    .default({ outcome: 'tempfail' }),
  index: quarantineIndexSchema.default({ backend: 'sqlite' }),
  digest: digestSchema.default(digestSchema.parse({})),
});

export type QuarantineConfig = z.output<typeof quarantineSchema>;
export type DigestConfig = z.output<typeof digestSchema>;
export type QuarantineIndexConfig = z.output<typeof quarantineIndexSchema>;
