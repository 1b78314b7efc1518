// Facts of a message file plus an envelope, computed the way the SMTP session computes them
// (same spool, same message facts, same HELO sanity and body facts), for `mailgate rules test`
// and corpus replays. Facts that need the network (DNS, Redis) are not computed here; they come
// from the envelope's `facts` (or `--fact` on the command line).
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FactSet, type FactValue } from '../pipeline/facts.ts';
import { Spool } from '../message/spool.ts';
import { messageFacts } from '../message/message-facts.ts';
import { parseAddress } from '../net/address.ts';
import { heloSanity } from '../checks/connection/helo-sanity.ts';
import { extractBodyText, type BodyLimits } from '../checks/content/body-text.ts';

/** The SMTP envelope and connection a message arrived with (a corpus sidecar file has these keys). */
export interface Envelope {
  /** Client address (default 192.0.2.1, a documentation address). */
  ip?: string;
  helo?: string;
  /** MAIL FROM; "" is the null sender. Default: the From header's address. */
  from?: string;
  /** RCPT TO addresses. Default: the To and Cc header addresses. */
  to?: string[];
  tls?: boolean;
  /** Extra facts, e.g. {"spf.result": "fail", "client.fcrdns": false}. */
  facts?: Record<string, FactValue>;
}

export interface OfflineOptions {
  /** Our host name and domains, for helo.is_our_name. */
  ourNames?: readonly string[];
  body?: BodyLimits;
  maxMessageBytes?: number;
  /**
   * Runs real checks (SPF, DKIM/ARC/DMARC, FCrDNS, DNSBL) on the facts and the spooled message
   * before the envelope's explicit facts are applied (so --fact still overrides what they find).
   */
  runChecks?: (facts: FactSet, message: Spool) => Promise<void>;
}

export interface OfflineMessage {
  facts: FactSet;
  recipients: string[];
  envelope: Required<Pick<Envelope, 'ip' | 'from'>> & Envelope;
  size: number;
}

export const DEFAULT_TEST_IP = '192.0.2.1';

/** Reads `X.json` or `X.eml.json` next to `X.eml`, if there is one. */
export function readSidecar(emlPath: string): Envelope | undefined {
  for (const p of [emlPath.replace(/\.eml$/i, '.json'), `${emlPath}.json`]) {
    if (p === emlPath || !existsSync(p)) continue;
    const v = JSON.parse(readFileSync(p, 'utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${p}: expected a JSON object with ip, helo, from, to, tls, facts`);
    return v as Envelope;
  }
  return undefined;
}

function headerAddresses(facts: FactSet, names: string[]): string[] {
  const headers = facts.get('message.headers');
  if (!Array.isArray(headers)) return [];
  const out: string[] = [];
  for (const h of headers as ReadonlyArray<Record<string, unknown>>) {
    if (typeof h.name !== 'string' || !names.includes(h.name.toLowerCase())) continue;
    for (const m of String(h.value ?? '').matchAll(/<?([^\s<>,;"]+@[^\s<>,;"]+)>?/g)) if (m[1]) out.push(m[1].toLowerCase());
  }
  return [...new Set(out)];
}

/** Builds every fact that can be known offline for `message` (the raw bytes of an .eml). */
export async function offlineFacts(message: Buffer, env: Envelope, opts: OfflineOptions = {}): Promise<OfflineMessage> {
  const spool = new Spool(
    {
      maxBytes: opts.maxMessageBytes ?? 104_857_600,
      maxHeaderBytes: 1_048_576,
      maxLineBytes: 1_048_576,
      memoryBytes: 104_857_600,
      tmpDir: join(tmpdir(), 'mailgate-rules-test'),
    },
    true,
  );
  await pipeline(Readable.from([message]), spool);
  try {
    const facts = new FactSet();
    const ip = env.ip ?? DEFAULT_TEST_IP;
    facts.set('client.ip', ip);
    facts.set('client.port', 25);
    facts.set('client.local_port', 25);
    facts.set('client.proxied', false);
    if (env.helo !== undefined) {
      facts.set('helo.name', env.helo);
      facts.set('helo.esmtp', true);
      for (const [k, v] of Object.entries(heloSanity(env.helo, ip, opts.ourNames ?? []))) facts.set(k, v);
    }
    messageFacts(spool, facts);
    facts.set('message.bare_newlines', spool.bareNewlines);
    const body = await extractBodyText(spool.stream(), opts.body ?? { maxBytes: 262_144, scanBytes: 4_194_304 });
    facts.set('message.body_text', body.text);
    facts.set('message.body_html', body.html);
    facts.set('message.body_truncated', body.truncated);

    const fromHeader = facts.get('message.from');
    const from = env.from ?? (Array.isArray(fromHeader) && typeof fromHeader[0] === 'string' ? fromHeader[0] : '');
    const parsed = from === '' ? undefined : parseAddress(from);
    facts.set('tls', env.tls ?? false);
    facts.set('mail.from', parsed?.address ?? from);
    facts.set('mail.from_domain', parsed?.domain ?? '');
    facts.set('mail.null_sender', from === '');
    facts.set('mail.size_declared', 0);
    facts.set('mail.body', '');
    facts.set('mail.smtputf8', false);
    facts.set('mail.transaction', 1);

    const to = (env.to ?? headerAddresses(facts, ['to', 'cc'])).map((a) => parseAddress(a)?.address ?? a);
    facts.set('rcpt.addresses', to);
    facts.set('rcpt.count', to.length);
    await opts.runChecks?.(facts, spool);
    for (const [k, v] of Object.entries(env.facts ?? {})) facts.set(k, v);
    return { facts, recipients: to, envelope: { ...env, ip, from, to }, size: spool.size };
  } finally {
    spool.release();
  }
}
