// The mailgate.yaml schema: every key, its default and its meaning. Unknown keys are errors so a
// typo never silently does nothing. Keep README's configuration reference in step with this file.
import './zod-jitless.ts';
import { isIP } from 'node:net';
import { z } from 'zod';
import { redisConnectionSchema, redisOptionsDefault, redisOptionsSchema } from '../store/redis-config.ts';
import { authConfigSchema } from './auth-schema.ts';
import { backscatterSchema } from './backscatter-schema.ts';
import { quarantineSchema } from './quarantine-schema.ts';
import { adminKeySchema } from './admin-schema.ts';
import { contentConfigSchema } from './content-schema.ts';
import { tracingSchema } from './tracing-schema.ts';
import { parseMilterAddress } from '../net/milter-address.ts';

/** "192.0.2.1", "2001:db8::1", "10.0.0.0/8", "2001:db8::/32". */
export function isIpOrCidr(s: string): boolean {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return false;
  if (slash < 0) return true;
  const bits = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+)(:\d{1,5})?$/, 'expected "host" or "host:port"');

export const tlsSchema = z.strictObject({
  /** PEM private key file. */
  key: z.string(),
  /** PEM certificate chain file. */
  cert: z.string(),
  /** true = TLS from the first byte (port 465 style); false = offer STARTTLS. */
  implicit: z.boolean().default(false),
});

export const listenSchema = z.strictObject({
  host: z.string().default('0.0.0.0'),
  port: z.number().int().min(0).max(65535),
  /** STARTTLS (or implicit TLS) on this listener. */
  tls: tlsSchema.optional(),
  /**
   * Expect a PROXY protocol v1/v2 header (HAProxy, a TCP load balancer) from the listed load
   * balancer addresses/CIDRs only (others are refused). `true` is refused: it would let any peer
   * claim any source address, 127.0.0.1 included (issue 14, item 3).
   */
  proxy_protocol: z
    .union([z.boolean(), z.array(z.string().refine(isIpOrCidr, 'expected an IP address or CIDR block, e.g. 10.0.0.5 or 10.0.0.0/24')).min(1)])
    .refine(
      (v) => v !== true,
      'true would trust every peer to claim any client address (127.0.0.1 included): list the load balancer addresses, e.g. proxy_protocol: [10.0.0.5, 10.0.1.0/24]',
    )
    .default(false),
});

export const backendSmtpSchema = z.strictObject({
  host: z.string(),
  port: z.number().int().min(1).max(65535).default(25),
  /** Name sent in EHLO to the backend; defaults to `hostname`. */
  helo: z.string().optional(),
  /** Connect + greeting timeout. */
  connect_timeout_ms: z.number().int().positive().default(10_000),
  /** Timeout for each backend reply (MAIL, RCPT, end of DATA waits for `data_timeout_ms`). */
  command_timeout_ms: z.number().int().positive().default(30_000),
  data_timeout_ms: z.number().int().positive().default(120_000),
  /** While streaming DATA: the backend must take more bytes within this, else 451 4.4.2 (it stopped reading). */
  write_timeout_ms: z.number().int().positive().default(30_000),
  /** Send XCLIENT when the backend offers it, so the MTA logs and checks the real client. */
  xclient: z.enum(['auto', 'off']).default('auto'),
  /** Keep up to this many idle, already greeted backend sessions for reuse (0 = none). */
  pool_size: z.number().int().min(0).max(1000).default(16),
  /** Drop an idle pooled session after this long. */
  pool_idle_ms: z.number().int().positive().default(30_000),
});

export const backendMaildirSchema = z.strictObject({
  /** Deliver into a Maildir instead of relaying (for trying mailgate out; accepts every user). */
  maildir: z.string(),
});

export const limitsSchema = z.strictObject({
  max_message_bytes: z.number().int().positive().default(52_428_800),
  max_recipients: z.number().int().positive().default(100),
  max_connections: z.number().int().positive().default(1000),
  max_connections_per_ip: z.number().int().positive().default(20),
  idle_timeout_s: z.number().positive().default(300),
  /** Largest header block accepted (all header fields together). */
  max_header_bytes: z.number().int().positive().default(262_144),
  /** Longest line accepted in DATA (RFC 5322 allows 998 octets + CRLF; many senders exceed it). */
  max_line_bytes: z.number().int().positive().default(65_536),
  /** Most transactions (MAIL FROM) on one connection. */
  max_messages_per_connection: z.number().int().positive().default(100),
  /** Messages up to this size are spooled in memory, larger ones in a temp file. */
  memory_spool_bytes: z.number().int().min(0).default(1_048_576),
  /** Refused MAIL/RCPT commands (4xx/5xx, e.g. unknown users) before 421 and disconnect. */
  max_errors: z.number().int().positive().default(10),
  /** Longest a connection may stay open, whatever it does (NOOP every 15 s): then 421 4.4.2 between transactions. */
  max_session_s: z.number().positive().default(3600),
  /** NOOP, RSET, VRFY, HELP and EXPN per connection (Postfix smtpd_junk_command_limit): then 421 4.7.0. */
  max_junk_commands: z.number().int().positive().default(100),
});

export const smtpSchema = z.strictObject({
  /**
   * Bare CR or LF inside DATA (RFC 5321 forbids them; SMTP smuggling relies on them).
   * `normalize`: turn them into CRLF (dot-stuffing the result on relay, so no line ends the
   * message early); `reject`: 550 the message.
   */
  bare_newlines: z.enum(['normalize', 'reject']).default('normalize'),
  /** NUL bytes in DATA (RFC 5321 2.3.8): `strip` them before relaying, or `reject` (550 5.6.0). */
  nul_bytes: z.enum(['strip', 'reject']).default('strip'),
  /** Implicit-TLS listeners: a client must complete the TLS handshake within this (then: closed). */
  tls_handshake_timeout_ms: z.number().int().positive().default(10_000),
  /** Text after "220 <hostname> ESMTP" in the greeting. */
  banner: z.string().default('mailgate'),
  /** Seconds SIGTERM waits for in-flight transactions before closing connections. */
  shutdown_grace_s: z.number().min(0).default(30),
  /**
   * Wait this long before the 220 greeting and record `client.pregreet` if the client talks
   * first (like Postfix postscreen's pregreet test). 0 = greet at once.
   */
  banner_delay_ms: z.number().int().min(0).max(30_000).default(0),
  /** Header fields removed from every message on the way in (case-insensitive names; `*` globs). */
  strip_headers: z.array(z.string()).default(['X-Mailgate-Status']),
  /** Add a Received header for the hop from the client to mailgate. */
  add_received: z.boolean().default(true),
});

/** The milter front (docs/milter.md): mailgate beside an existing Postfix (smtpd_milters). */
export const milterSchema = z.strictObject({
  /** `inet:PORT@HOST` or `unix:/PATH` (Postfix's own notation for smtpd_milters). */
  listen: z.string().refine((s) => typeof parseMilterAddress(s) !== 'string', { message: 'expected "inet:PORT@HOST" or "unix:/PATH"' }),
  /** Unix socket file mode, octal as a string ("0660"). */
  mode: z
    .string()
    .regex(/^0?[0-7]{3}$/, 'expected an octal mode like "0660"')
    .optional(),
  /** Unix socket owner: "user", "user:group" (e.g. postfix:postfix). */
  owner: z.string().min(1).optional(),
  /** Quarantine verdicts: `hold` = Postfix's HOLD queue (postsuper -H releases); `store` = mailgate's quarantine, discarded by Postfix. */
  quarantine: z.enum(['hold', 'store']).default('hold'),
  /** Largest milter packet accepted; bigger ones close the connection before any allocation. */
  max_packet_bytes: z.number().int().min(65_536).max(67_108_864).default(1_048_576),
});

export const configSchema = z
  .strictObject({
    hostname: z.string().min(1),
    /** SMTP listeners; `[]` for a milter-only gateway. */
    listen: z.array(listenSchema).default([{ host: '0.0.0.0', port: 25, proxy_protocol: false }]),
    domains: z.array(z.string().min(1)).min(1),
    /** Required with SMTP listeners; a milter-only gateway has none (Postfix delivers). */
    backend: z.union([backendSmtpSchema, backendMaildirSchema]).optional(),
    milter: milterSchema.optional(),
    /** Shared state (rate limits, greylisting): a URL, Sentinel or Cluster. Without it: in-process store. */
    redis: redisConnectionSchema.optional(),
    /** Timeouts, key prefix, fail_open / fail_closed (src/store/redis-config.ts, docs/ratelimit.md). */
    redis_options: redisOptionsSchema.default(redisOptionsDefault),
    dns: z
      .strictObject({
        /** Resolvers as "ip" or "ip:port"; default: the system's. */
        servers: z.array(hostPort).optional(),
        timeout_ms: z.number().int().positive().default(2000),
      })
      .default({ timeout_ms: 2000 }),
    rules: z.string().default('rules/'),
    /** Held messages: files, index, retention, quota, digests (docs/quarantine.md). */
    quarantine: quarantineSchema.default(quarantineSchema.parse({})),
    /** Admin listener: /metrics /healthz /readyz, the quarantine API and console (docs/quarantine.md). */
    admin: adminKeySchema,
    /**
     * Temp files of large messages (over limits.memory_spool_bytes): a private directory (created
     * mode 0700, leftovers removed at start). Default: `spool/` beside the quarantine directory.
     */
    spool_dir: z.string().optional(),
    limits: limitsSchema.default(limitsSchema.parse({})),
    smtp: smtpSchema.default(smtpSchema.parse({})),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        /** Write the JSON lines to this file instead of stdout; reopened on SIGUSR1 (logrotate). */
        file: z.string().min(1).optional(),
      })
      .default({ level: 'info' }),
    /** Sender authentication (SPF, DKIM, DMARC, ARC): see docs/auth.md. */
    auth: authConfigSchema.default(authConfigSchema.parse({})),
    /** DSN backscatter protection: BATV, the outbound signing listener, heuristics (docs/backscatter.md). */
    backscatter: backscatterSchema.default(backscatterSchema.parse({})),
    /** Content inspection: MIME walk and archive limits, clamd, Rspamd, spamd, HTTP hooks (docs/content.md). */
    content: contentConfigSchema.default(contentConfigSchema.parse({})),
    /**
     * Checks switched off entirely (by name: spf, dkim-arc-dmarc, fcrdns, helo-sanity, dnsbl,
     * concurrency, ratelimit, greylist, body-text). Their facts are then never set, so rules that
     * read them never fire. For networks without DNS, or a relay-only benchmark.
     */
    checks: z.strictObject({ disabled: z.array(z.string()).default([]) }).default({ disabled: [] }),
    /**
     * Bounded capture of recent verdict inputs (facts, not bodies) that `mailgate rules diff`
     * replays. Default: on, var/capture.jsonl next to the quarantine directory. `false` = off.
     */
    capture: z
      .union([
        z.literal(false),
        z.strictObject({
          enabled: z.boolean().default(true),
          file: z.string().optional(),
          max_entries: z.number().int().positive().default(10_000),
          /** Fact names (or prefix.*) never written to the capture, e.g. message.subject. */
          exclude: z.array(z.string()).default([]),
        }),
      ])
      .optional(),
    /** OpenTelemetry tracing over OTLP/HTTP; off by default (docs/operations.md "Tracing"). */
    tracing: tracingSchema.default(tracingSchema.parse({})),
    /** Worker processes: a number, or `auto` for one per CPU core. */
    workers: z.union([z.number().int().min(1).max(64), z.literal('auto')]).default(1),
  })
  .superRefine((c, ctx) => {
    if (c.listen.length > 0 && !c.backend) {
      ctx.addIssue({
        code: 'custom',
        path: ['backend'],
        message: 'required: SMTP listeners (listen) relay to a backend; for a milter-only gateway set `listen: []` and `milter:`',
      });
    }
    if (c.listen.length === 0 && !c.milter) {
      ctx.addIssue({ code: 'custom', path: ['listen'], message: 'no listener: give at least one SMTP listener, or a `milter:` listener' });
    }
  });

export type Config = z.output<typeof configSchema>;
export type ListenConfig = z.output<typeof listenSchema>;
export type BackendSmtpConfig = z.output<typeof backendSmtpSchema>;
export type BackendMaildirConfig = z.output<typeof backendMaildirSchema>;
export type MilterConfig = z.output<typeof milterSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;

export function isMaildirBackend(b: Config['backend']): b is BackendMaildirConfig {
  return b !== undefined && 'maildir' in b;
}
