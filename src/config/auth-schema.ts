// The `auth:` section of mailgate.yaml: sender authentication (SPF, DKIM, DMARC, ARC) settings.
// Every key has a default, so `auth:` can be left out; docs/auth.md documents each one.
import { z } from 'zod';

const domainName = z
  .string()
  .min(1)
  .transform((d) => d.toLowerCase().replace(/\.$/, ''));

export const arcSealSchema = z.strictObject({
  /** Signing domain (d=) of our ARC-Seal and ARC-Message-Signature. */
  domain: domainName,
  /** Selector (s=); the public key is published at `<selector>._domainkey.<domain>`. */
  selector: z.string().min(1),
  /** Private key: a PEM file path (relative to the working directory) or the PEM text itself. */
  key: z.string().min(1),
  /** Signing algorithm; default: follows the key type (RSA → rsa-sha256, Ed25519 → ed25519-sha256). */
  algorithm: z.enum(['rsa-sha256', 'ed25519-sha256']).optional(),
});

export const authConfigSchema = z.strictObject({
  /** authserv-id written in (and recognised in) Authentication-Results; default: `hostname`. */
  authserv_id: z.string().min(1).optional(),
  /** Also evaluate SPF for the HELO identity (RFC 7208 section 2.3); fact `spf.helo_result`. */
  spf_helo: z.boolean().default(true),
  /**
   * SPF results remembered per (client IP, domain) while every DNS answer they read is still
   * cached (so never past the smallest TTL), at most this many; 0 turns it off. Evaluations whose
   * records use macros, hit a DNS error or end in temperror are never remembered.
   */
  spf_memo_size: z.number().int().min(0).max(1_000_000).default(10_000),
  /** Upper bound (seconds) on how long one SPF result is remembered, whatever the TTLs. */
  spf_memo_max_ttl_s: z.number().int().positive().max(86_400).default(300),
  /**
   * Per method: follow the RFC exactly (mailauth's strict mode) instead of mailauth's lenient
   * defaults. SPF strict passes the whole openspf RFC 7208 suite; DKIM lenient accepts old
   * signatures (rsa-sha1, draft-era tags) that strict turns into neutral/policy. ARC chain
   * structure is always parsed strictly (RFC 8617).
   */
  strict: z
    .strictObject({
      spf: z.boolean().default(true),
      dkim: z.boolean().default(false),
      dmarc: z.boolean().default(false),
    })
    .default({ spf: true, dkim: false, dmarc: false }),
  /** At most this many DKIM signatures are verified per message; the rest are reported as skipped. */
  max_dkim_signatures: z.number().int().min(1).max(50).default(10),
  /** Smallest RSA key accepted (smaller: dkim=policy, weak key). RFC 8301 section 3.2 sets 1024. */
  min_key_bits: z.number().int().min(512).max(16384).default(1024),
  /** Largest RSA key accepted (larger: dkim=policy, not verified). */
  max_key_bits: z.number().int().min(1024).max(16384).default(8192),
  /** Treat rsa-sha1 signatures as dkim=policy (RFC 8301 section 3.1) instead of verifying them. */
  reject_rsa_sha1: z.boolean().default(false),
  /**
   * ARC sealers (d= of the newest ARC-Seal) whose arc=pass overrides a DMARC failure caused by
   * forwarding, when their ARC-Authentication-Results recorded dmarc=pass. Subdomains match.
   */
  trusted_arc_sealers: z.array(domainName).default([]),
  /** Add an ARC set to every message we pass on (optional). */
  arc_seal: arcSealSchema.optional(),
  /**
   * Header fields removed from incoming messages before they are relayed, in addition to the
   * Authentication-Results / ARC-Authentication-Results that claim our authserv-id. Names are
   * case-insensitive; a trailing `*` matches any suffix.
   */
  strip_headers: z.array(z.string().regex(/^[!-9;-~]+\*?$/, 'expected a header field name, optionally ending in *')).default(['X-MS-Exchange-Organization-*']),
  /** Time limit for each auth check (SPF at MAIL FROM; DKIM+ARC+DMARC at end of DATA). */
  timeout_ms: z.number().int().positive().default(20_000),
  /** What happens when an auth check throws or exceeds `timeout_ms` (DNS trouble itself is a temperror result, not a failure). */
  on_failure: z.enum(['tempfail', 'continue', 'reject']).default('tempfail'),
});

export type AuthConfig = z.output<typeof authConfigSchema>;
export type ArcSealConfig = z.output<typeof arcSealSchema>;
