// The `content:` section of mailgate.yaml: limits of the MIME walk and archive inspection, and
// where the scanners are (clamd, Rspamd, spamd, HTTP hooks). Policy — what blocks, what scores —
// is in the rules (rules/40-content.yaml), not here. docs/content.md documents every key.
import './zod-jitless.ts';
import { z } from 'zod';

const failure = z.enum(['tempfail', 'continue', 'reject']);
const size = z
  .union([z.number().int().positive(), z.string().regex(/^\d{1,12}[kKmMgG]?$/, 'expected a byte count such as 25M, 512K or 1048576')])
  .transform((v) => (typeof v === 'number' ? v : parseSize(v)));

/** "25M" → 26214400 (K, M, G are powers of 1024, as in clamd.conf). */
export function parseSize(s: string): number {
  const unit = s[s.length - 1]?.toLowerCase() ?? '';
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(mult === 1 ? s : s.slice(0, -1)) * mult;
}

export const mimeLimitsSchema = z.strictObject({
  max_depth: z.number().int().min(1).max(100).default(20),
  max_parts: z.number().int().min(1).max(100_000).default(500),
  max_part_header_bytes: size.default(65_536),
  max_decoded_bytes: size.default(64 * 1024 * 1024),
  max_text_bytes: size.default(262_144),
  max_keep_bytes: size.default(10 * 1024 * 1024),
  max_keep_total_bytes: size.default(16 * 1024 * 1024),
});

export const archiveLimitsSchema = z.strictObject({
  max_depth: z.number().int().min(0).max(10).default(3),
  max_entries: z.number().int().min(1).default(1000),
  max_member_bytes: size.default(4 * 1024 * 1024),
  max_total_bytes: size.default(64 * 1024 * 1024),
  max_ratio: z.number().positive().default(100),
});

export const uriblSchema = z.strictObject({
  /** Domain blocklist zone queried as `<host>.<zone>` (e.g. dbl.spamhaus.org, multi.surbl.org). */
  zone: z.string().min(1),
  /** Added to url.dnsbl_score per listed host. */
  weight: z.number().default(1),
  /** Name in facts (default: the zone). */
  name: z.string().optional(),
});

export const urlSettingsSchema = z.strictObject({
  /** Most URLs kept per message (url.urls); hosts are deduplicated. */
  max_urls: z.number().int().min(1).max(10_000).default(200),
  /** URI DNS blocklists: off by default, like the DNSBLs, for networks without Internet DNS. */
  dnsbl: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** Most DNS lookups per message (hosts × lists). */
      max_lookups: z.number().int().min(1).max(1000).default(20),
      timeout_ms: z.number().int().positive().default(3000),
      lists: z.array(uriblSchema).default([]),
    })
    .default({ enabled: false, max_lookups: 20, timeout_ms: 3000, lists: [] }),
});

export const clamavSchema = z
  .strictObject({
    enabled: z.boolean().default(false),
    /** Unix socket of clamd (LocalSocket); takes precedence over host/port. */
    socket: z.string().optional(),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(1).max(65535).default(3310),
    connect_timeout_ms: z.number().int().positive().default(2000),
    /** Whole scan (stream and answer). */
    timeout_ms: z.number().int().positive().default(30_000),
    /** Idle connections kept per gateway process. */
    pool_size: z.number().int().min(0).max(64).default(4),
    /** clamd's StreamMaxLength: a larger message is not sent and is av.unscanned (reason size). */
    stream_max_bytes: size.default(25 * 1024 * 1024),
    /** Also scan each decoded attachment the MIME walk kept, on its own. */
    scan_attachments: z.boolean().default(false),
    /** clamd down, hung or erroring: tempfail (default), continue (facts av.result=error), reject. */
    on_failure: failure.default('tempfail'),
  })
  .refine((c) => !(c.socket && c.socket.length > 107), { message: 'socket path longer than 107 bytes' });

export const rspamdSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** Base URL of the Rspamd normal worker (the /checkv2 endpoint is appended). */
  url: z.string().url().default('http://127.0.0.1:11333'),
  /** Sent as the Password header (controller password), if set. */
  password: z.string().optional(),
  timeout_ms: z.number().int().positive().default(15_000),
  /** Larger messages are not sent (rspamd.skipped). */
  max_bytes: size.default(20 * 1024 * 1024),
  on_failure: failure.default('continue'),
});

export const spamassassinSchema = z.strictObject({
  enabled: z.boolean().default(false),
  socket: z.string().optional(),
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(1).max(65535).default(783),
  /** The User header (per-user preferences in spamd). */
  user: z.string().optional(),
  timeout_ms: z.number().int().positive().default(30_000),
  max_bytes: size.default(512 * 1024),
  on_failure: failure.default('continue'),
});

const factName = z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'expected a lower-case fact name such as verdict or score');

export const hookSchema = z.strictObject({
  /** hook.<name>.* facts; lower case. */
  name: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'expected a lower-case name such as phishcheck (letters, digits, _)'),
  url: z.string().url(),
  timeout_ms: z.number().int().positive().default(10_000),
  /** Messages larger than this are not sent (hook.<name>.skipped). */
  max_bytes: size.default(10 * 1024 * 1024),
  /** Extra request headers (e.g. an Authorization token). */
  headers: z.record(z.string(), z.string()).default({}),
  /** The facts the hook may answer, with their types: only these are taken from its JSON. */
  facts: z.record(factName, z.enum(['string', 'number', 'boolean', 'string[]'])).default({}),
  on_failure: failure.default('continue'),
});

export const contentConfigSchema = z.strictObject({
  mime: mimeLimitsSchema.default(mimeLimitsSchema.parse({})),
  archives: archiveLimitsSchema.default(archiveLimitsSchema.parse({})),
  urls: urlSettingsSchema.default(urlSettingsSchema.parse({})),
  clamav: clamavSchema.default(clamavSchema.parse({})),
  rspamd: rspamdSchema.default(rspamdSchema.parse({})),
  spamassassin: spamassassinSchema.default(spamassassinSchema.parse({})),
  hooks: z.array(hookSchema).default([]),
});

export type ContentConfig = z.output<typeof contentConfigSchema>;
export type ClamavConfig = z.output<typeof clamavSchema>;
export type RspamdConfig = z.output<typeof rspamdSchema>;
export type SpamassassinConfig = z.output<typeof spamassassinSchema>;
export type HookConfig = z.output<typeof hookSchema>;
export type UrlSettings = z.output<typeof urlSettingsSchema>;
