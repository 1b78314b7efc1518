// The `backscatter:` section of mailgate.yaml: BATV keys and per-domain modes, the outbound
// listener (relay_networks, next hop) that signs mail leaving the site, and the heuristics for
// bounces of mail we never sent. docs/backscatter.md documents every key.
import { z } from 'zod';
import { durationSchema, rateSchema } from './durations.ts';
import { parseCidr } from '../net/ip.ts';

export const BATV_MODES = ['off', 'tag-only', 'strict'] as const;
export type BatvMode = (typeof BATV_MODES)[number];
const modeSchema = z.enum(BATV_MODES);

const domainName = z
  .string()
  .min(1)
  .transform((d) => d.toLowerCase().replace(/\.$/, ''));

const cidr = z.string().refine((s) => parseCidr(s) !== undefined, { message: 'expected an IP address or CIDR block like 192.0.2.0/24' });

export const batvKeySchema = z.strictObject({
  /** Key number K in the tag (draft-levine-smtp-batv 4.1), 0-9. */
  id: z.number().int().min(0).max(9),
  /** HMAC secret; at least 16 characters (use `openssl rand -hex 32`). */
  secret: z.string().min(16, 'a BATV secret must be at least 16 characters'),
});

export const outboundSchema = z.strictObject({
  /** Where the site's MTA relays outgoing mail to (its `relayhost`). */
  listen: z.strictObject({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535) }),
  /** Clients allowed to relay through the listener; everyone else gets 554 5.7.1. Empty = closed. */
  relay_networks: z.array(cidr).default([]),
  /** The next hop mail is relayed to, before-queue: the MTA gets this server's reply. */
  next_hop: z.strictObject({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(25),
    /** Name in our EHLO to the next hop; default: `hostname`. */
    helo: z.string().optional(),
    connect_timeout_ms: z.number().int().positive().default(10_000),
    command_timeout_ms: z.number().int().positive().default(30_000),
    data_timeout_ms: z.number().int().positive().default(120_000),
  }),
  /** BATV-sign MAIL FROM of mail from our domains (needs batv.keys). */
  sign: z.boolean().default(true),
  max_message_bytes: z.number().int().positive().default(52_428_800),
});

const batvDefault = { keys: [], max_age_days: 7 };
const recordDefault = { ttl: 30 * 86_400_000, max_entries: 100_000 };

export const backscatterSchema = z
  .strictObject({
    /** BATV mode for bounces to our domains: off | tag-only | strict. */
    mode: modeSchema.default('off'),
    /** Per-domain BATV mode, overriding `mode` (e.g. `{ example.com: strict }`). */
    domains: z
      .record(z.string().min(1), modeSchema)
      .default({})
      .transform((r) => Object.fromEntries(Object.entries(r).map(([d, m]) => [d.toLowerCase().replace(/\.$/, ''), m]))),
    batv: z
      .strictObject({
        /** Keys tags are verified with; several for rotation. */
        keys: z.array(batvKeySchema).default([]),
        /** Key id new tags are signed with; default: the first key. */
        sign_key: z.number().int().min(0).max(9).optional(),
        /** Days a tag stays valid (its expiry day is the signing day + this). */
        max_age_days: z.number().int().min(1).max(60).default(7),
      })
      .default(batvDefault),
    /** The outbound (signing) listener; absent = none (heuristics-only setup). */
    outbound: outboundSchema.optional(),
    /** Outgoing Message-IDs are remembered this long (shared store; in-process: at most max_entries). */
    record: z
      .strictObject({
        ttl: durationSchema.default(30 * 86_400_000),
        max_entries: z.number().int().min(16).default(100_000),
      })
      .default(recordDefault),
    /** Our outgoing mail is DKIM-signed: a returned original without our signature is suspect. */
    outbound_signed: z.boolean().default(false),
    /** DKIM d= domains that count as ours; default: `domains` of mailgate.yaml. */
    dkim_domains: z.array(domainName).optional(),
    /** Bounces per recipient above this rate set backscatter.bounce_rate_exceeded. */
    bounce_rate: rateSchema.default({ count: 10, periodMs: 3_600_000 }),
  })
  .superRefine((v, ctx) => {
    const ids = new Set<number>();
    v.batv.keys.forEach((k, i) => {
      if (ids.has(k.id)) ctx.addIssue({ code: 'custom', path: ['batv', 'keys', i, 'id'], message: `key id ${k.id} is used twice` });
      ids.add(k.id);
    });
    if (v.batv.sign_key !== undefined && !ids.has(v.batv.sign_key)) {
      ctx.addIssue({ code: 'custom', path: ['batv', 'sign_key'], message: `no key with id ${v.batv.sign_key} in batv.keys` });
    }
    const usesBatv = v.mode !== 'off' || Object.values(v.domains).some((m) => m !== 'off') || (v.outbound?.sign ?? false);
    if (usesBatv && v.batv.keys.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['batv', 'keys'], message: 'BATV is in use (a mode other than off, or outbound.sign) but batv.keys is empty' });
    }
  });

export type BackscatterConfig = z.output<typeof backscatterSchema>;
export type OutboundConfig = z.output<typeof outboundSchema>;
