// Per-recipient quarantine digests: one mail per recipient (of a domain with digests on) listing
// the messages held for them, each with a signed, expiring, single-use release link. Composed
// with nodemailer and delivered through the Backend, the same delivery code as live mail.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { Backend } from '../backend.ts';
import type { Config } from '../../config/schema.ts';
import type { IndexRow } from './entry.ts';
import type { QuarantineStore } from './store.ts';
import { signToken } from './digest-token.ts';
import type { DigestConfig } from '../../config/quarantine-schema.ts';

export interface DigestResult {
  rcpt: string;
  count: number;
  /** `sent: <backend reply>`, `dry run`, or `failed: <why>`. */
  result: string;
  links?: string[];
}

export function digestKey(cfg: DigestConfig, quarantineDir: string): string {
  if (cfg.hmac_key) return cfg.hmac_key;
  if (cfg.key_file) {
    const f = isAbsolute(cfg.key_file) ? cfg.key_file : join(quarantineDir, cfg.key_file);
    const k = readFileSync(f, 'utf8').trim();
    if (k.length < 32) throw new Error(`${f}: quarantine.digest.key_file: the key needs at least 32 characters`);
    return k;
  }
  throw new Error('quarantine.digest: hmac_key or key_file is required to sign release links');
}

/** Which settings apply to a recipient's domain: its own entry, else `*`, else none (off). */
export function domainSettings(cfg: DigestConfig, rcpt: string): { from: string } | undefined {
  if (!cfg.enabled) return undefined;
  const domain = rcpt.slice(rcpt.lastIndexOf('@') + 1).toLowerCase();
  const d = cfg.domains[domain] ?? cfg.domains['*'];
  if (!d || !d.enabled) return undefined;
  return { from: d.from ?? cfg.from };
}

function oneLine(s: string, max: number): string {
  let out = '';
  for (const c of s) {
    if (out.length >= max) return `${out}…`;
    out += c < ' ' ? ' ' : c;
  }
  return out;
}

export interface DigestOptions {
  store: QuarantineStore;
  backend: Backend;
  config: Config;
  dryRun?: boolean;
  now?: () => number;
}

/** Sends (or, dry run, lists) every digest due now: held entries received within one interval. */
export async function sendDigests(o: DigestOptions): Promise<DigestResult[]> {
  const cfg = o.config.quarantine.digest;
  if (!cfg.enabled) return [];
  const now = (o.now ?? Date.now)();
  const key = digestKey(cfg, o.config.quarantine.dir);
  const base = (cfg.link_base_url ?? `http://${o.config.hostname}:${o.config.admin === false ? 9025 : o.config.admin.port}`).replace(/\/+$/, '');
  const window = cfg.interval === 0 ? 86_400_000 : cfg.interval;
  const since = new Date(now - window).toISOString();
  const byRcpt = new Map<string, IndexRow[]>();
  for (let offset = 0; ; offset += 1000) {
    const { rows } = await o.store.list({ since, status: 'held', limit: 1000, offset });
    for (const r of rows) {
      for (const rc of r.rcpts) {
        const a = rc.toLowerCase();
        if (!domainSettings(cfg, a)) continue;
        const list = byRcpt.get(a) ?? [];
        list.push(r);
        byRcpt.set(a, list);
      }
    }
    if (rows.length < 1000) break;
  }
  // nodemailer (~20 MiB) only when digests are composed, not in every gateway process
  const { default: nodemailer } = await import('nodemailer');
  const composer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  const out: DigestResult[] = [];
  for (const [rcpt, rows] of byRcpt) {
    const from = (domainSettings(cfg, rcpt) as { from: string }).from;
    const sender = from.includes('@') ? from : `${from}@${o.config.hostname}`;
    const links = rows.map((r) => `${base}/q/release/${signToken(key, { id: r.id, rcpt, exp: now + cfg.link_ttl })}`);
    const text = [
      `${rows.length} message(s) addressed to you were held in quarantine at ${o.config.hostname}.`,
      'Release a message you expected with its link (each link works once and expires).',
      '',
      ...rows.flatMap((r, i) => [
        `${r.received.slice(0, 16).replace('T', ' ')} UTC  from <${oneLine(r.from, 200)}>  score ${r.score}`,
        `  reason: ${oneLine(r.reason, 200)}`,
        `  release: ${links[i]}`,
        '',
      ]),
    ].join('\n');
    const result: DigestResult = { rcpt, count: rows.length, result: 'dry run', links };
    if (!o.dryRun) {
      try {
        const info = (await composer.sendMail({
          from: sender,
          to: rcpt,
          subject: cfg.subject.replace('{count}', String(rows.length)),
          text,
          headers: { 'Auto-Submitted': 'auto-generated', 'X-Mailgate-Digest': '1' },
        })) as unknown as { message: Buffer };
        const link = o.backend.link({ ip: '127.0.0.1', port: 0, helo: o.config.hostname, esmtp: true });
        try {
          const m = await link.mail(sender, {});
          if (m.code >= 300) throw new Error(`MAIL: ${m.code} ${m.lines.join(' ')}`);
          const r = await link.rcpt(rcpt);
          if (r.code >= 300) throw new Error(`RCPT: ${r.code} ${r.lines.join(' ')}`);
          const d = await link.data([info.message]);
          if (d.code >= 300) throw new Error(`DATA: ${d.code} ${d.lines.join(' ')}`);
          result.result = `sent: ${d.code} ${d.enhanced} ${d.lines.join(' ')}`;
        } catch (err) {
          await link.abort();
          result.result = `failed: ${(err as Error).message}`;
        } finally {
          link.release();
        }
      } catch (err) {
        result.result = `failed: ${(err as Error).message}`;
      }
    }
    out.push(result);
  }
  return out;
}

/**
 * For `serve`: sends digests every `quarantine.digest.interval` (when enabled and non-zero).
 * Returns a stop function. Several instances sharing one index would each send: run digests on
 * one instance, or from cron with `mailgate quarantine digest` and `interval: 0`.
 */
export function scheduleDigests(
  o: Omit<DigestOptions, 'dryRun'> & { logger?: { info(o: object, m: string): void; error(o: object, m: string): void } },
): () => void {
  const cfg = o.config.quarantine.digest;
  if (!cfg.enabled || cfg.interval === 0) return () => undefined;
  const t = setInterval(() => {
    sendDigests(o).then(
      (r) => o.logger?.info({ digests: r.length, failed: r.filter((x) => x.result.startsWith('failed')).length }, 'quarantine digests sent'),
      (err: Error) => o.logger?.error({ err: err.message }, 'quarantine digests failed'),
    );
  }, cfg.interval);
  t.unref();
  return () => clearInterval(t);
}
