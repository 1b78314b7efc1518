// The small syntaxes shared by the `ratelimits:`, `concurrency:` and `greylist:` sections of rules
// files: durations (`90s`, `5m`, `35d`), rates (`100/1m`, `10/s`), and the keys a limit counts by
// (client IP, client network, HELO, sender, recipient, DMARC-aligned domain, or a combination).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { FactSet } from '../../pipeline/facts.ts';
import type { Stage } from '../../pipeline/stages.ts';
import { networkOf, normalizeIp } from '../../net/ip.ts';

export { durationSchema, parseDuration, parseRate, rateSchema } from '../../config/durations.ts';

/** What a limit counts by. Several make a combined key (e.g. [client_net, sender_domain]). */
export const KEY_PARTS = ['client_ip', 'client_net', 'helo', 'sender', 'sender_domain', 'recipient', 'recipient_domain', 'dmarc_domain'] as const;
export type KeyPart = (typeof KEY_PARTS)[number];

/** The earliest stage each key part is known at. */
export const KEY_PART_STAGE: Record<KeyPart, Stage> = {
  client_ip: 'connect',
  client_net: 'connect',
  helo: 'helo',
  sender: 'mail',
  sender_domain: 'mail',
  recipient: 'rcpt',
  recipient_domain: 'rcpt',
  dmarc_domain: 'data',
};

export const keySchema = z.union([z.enum(KEY_PARTS), z.array(z.enum(KEY_PARTS)).min(1).max(4)]).transform((v) => [...new Set(Array.isArray(v) ? v : [v])]);

/**
 * Email addresses and domains for keys: lower-cased; the null sender is `<>`. Values longer than
 * 100 characters (client-controlled HELO names, long local parts) are replaced by a hash so keys
 * stay short.
 */
export function keyValue(v: string): string {
  const s = v.toLowerCase();
  return s.length <= 100 ? s : `#${createHash('sha256').update(s).digest('base64url').slice(0, 22)}`;
}

export interface KeyContext {
  facts: FactSet;
  /** At rcpt: the recipient being checked. */
  recipient?: string | undefined;
  prefix4: number;
  prefix6: number;
}

const str = (facts: FactSet, name: string): string | undefined => {
  const v = facts.get(name);
  return typeof v === 'string' ? v : undefined;
};

/** The value of one key part for this event, or undefined when it does not apply. */
export function keyPartValue(part: KeyPart, c: KeyContext): string | undefined {
  const f = c.facts;
  switch (part) {
    case 'client_ip': {
      const ip = str(f, 'client.ip');
      return ip === undefined ? undefined : (normalizeIp(ip) ?? ip);
    }
    case 'client_net': {
      const ip = str(f, 'client.ip');
      return ip === undefined ? undefined : networkOf(ip, c.prefix4, c.prefix6);
    }
    case 'helo': {
      const h = str(f, 'helo.name');
      return h === undefined ? undefined : keyValue(h.replace(/\.$/, ''));
    }
    case 'sender': {
      const s = str(f, 'mail.from');
      return s === undefined ? undefined : s === '' ? '<>' : keyValue(s);
    }
    case 'sender_domain': {
      const s = str(f, 'mail.from');
      if (s === undefined) return undefined;
      return s === '' ? '<>' : keyValue(str(f, 'mail.from_domain') ?? s.slice(s.lastIndexOf('@') + 1));
    }
    case 'recipient': {
      const r = c.recipient ?? str(f, 'rcpt.address');
      return r === undefined ? undefined : keyValue(r);
    }
    case 'recipient_domain': {
      const r = c.recipient ?? str(f, 'rcpt.address');
      return r === undefined ? undefined : keyValue(r.slice(r.lastIndexOf('@') + 1));
    }
    case 'dmarc_domain': {
      // Only an authenticated (DMARC pass: aligned SPF or DKIM) From domain; otherwise the limit
      // does not apply to this message (an unauthenticated domain could be anyone's).
      if (f.get('dmarc.result') !== 'pass') return undefined;
      const d = str(f, 'dmarc.domain') ?? str(f, 'message.from_domain');
      return d ? keyValue(d) : undefined;
    }
  }
}

/** "45 seconds", "3 minutes", "2 hours": a retry hint for reply texts (rounded up). */
export function humanDuration(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 90) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  if (m < 90) return `${m} minutes`;
  const h = Math.ceil(m / 60);
  if (h < 48) return `${h} hours`;
  return `${Math.ceil(h / 24)} days`;
}
