// Runs a message file (or a captured transaction) through the transaction core offline, exactly
// as `serve` would — same envelope normalisation, same checks, same rules, same reply mapper — with
// a next hop that accepts everything and nothing stored. `mailgate rules test`, `rules diff` and the
// corpus tests drive this, so what they print is what the gateway does.
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pino from 'pino';
import type { Config } from '../config/schema.ts';
import { configSchema } from '../config/schema.ts';
import type { Check } from '../pipeline/check.ts';
import { FactSet, type FactValue } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import { stageIndex } from '../pipeline/stages.ts';
import { emptyVerdict, type Action, type Policy, type Verdict } from '../pipeline/verdict.ts';
import { passThroughBackend } from '../delivery/pass-through.ts';
import type { Runtime } from '../pipeline/runtime.ts';
import { ConnectionCore } from '../pipeline/transaction.ts';
import type { SmtpReply } from '../pipeline/reply.ts';
import { Spool } from '../message/spool.ts';
import { buildChecks } from '../checks/catalogue.ts';
import { isRulesAware } from '../rules/rules-aware.ts';
import type { LoadedRules } from '../rules/loader.ts';
import { createResolver } from '../dns/resolver.ts';
import { createSharedStore } from '../store/create-store.ts';
import { normalizeDomain, parseAddress } from '../net/address.ts';

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
  /** Extra facts, e.g. {"spf.result": "fail", "client.fcrdns": false}; they win over computed ones. */
  facts?: Record<string, FactValue>;
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

export interface StageStep {
  stage: Stage;
  recipient?: string;
  verdict: Verdict;
}

export interface OfflineResult {
  /** The final action, or `incomplete` when the facts stop before the transaction ends. */
  action: Action | 'incomplete';
  /** The stage the outcome was decided at (where a refusal happened, or data). */
  stage: Stage;
  /** The reply the client would get (the next hop's acceptance is assumed). */
  reply?: SmtpReply;
  verdict: Verdict;
  steps: StageStep[];
  recipients: Array<{ address: string; action: Verdict['action']; reply: SmtpReply }>;
  /** Every fact the rules saw at the last stage run. */
  facts: FactSet;
  envelope: Required<Pick<Envelope, 'ip' | 'from' | 'to'>> & Envelope;
  size: number;
}

export interface OfflineRun {
  policy: Policy;
  /** Checks to run (already filtered to what may run offline) — none for a replay of captured facts. */
  checks: Check[];
  /** The gateway's config (domains, limits, host name); a minimal one when there is none. */
  config?: Config;
  envelope: Envelope;
  /** The raw message; absent for a replay of captured facts (their message facts are in `facts`). */
  message?: Buffer;
  /** Last stage the facts cover (a capture of a refused MAIL has no data facts); default data. */
  lastStage?: Stage;
}

/** A next hop that accepts everything and sends nothing. */
const acceptingBackend = passThroughBackend('offline (nothing is sent)', 'Ok: accepted (offline run, nothing sent)');

function headerAddresses(raw: Buffer, names: readonly string[]): string[] {
  // Only the header block; a linear scan for user@domain tokens (no backtracking regex).
  const end = raw.indexOf('\r\n\r\n');
  const text = raw
    .subarray(0, end < 0 ? Math.min(raw.length, 262_144) : end)
    .toString('utf8')
    .replace(/\r?\n[ \t]+/g, ' ');
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || !names.includes(line.slice(0, colon).trim().toLowerCase())) continue;
    for (const tok of line.slice(colon + 1).split(/[\s<>,;"]+/))
      if (tok.includes('@') && tok.indexOf('@') > 0 && !tok.endsWith('@')) out.push(tok.toLowerCase());
  }
  return [...new Set(out)];
}

/** A minimal config for offline runs without mailgate.yaml: our domains are the recipients'. */
function offlineConfig(domains: readonly string[]): Config {
  return configSchema.parse({
    hostname: 'mailgate.invalid',
    domains: domains.length ? [...domains] : ['example.invalid'],
    backend: { maildir: join(tmpdir(), 'mailgate-offline-unused') },
    admin: false,
    capture: false,
  });
}

/**
 * The checks `rules test` runs: the pure ones always (HELO sanity, body text, content), those that
 * need DNS (FCrDNS, DNSBL, SPF, DKIM/ARC/DMARC) only with a config and without --offline, those
 * that count or record (rate limits, greylisting) never — they would change the gateway's state.
 */
export async function offlineChecks(base: Config | undefined, loaded: LoadedRules, live: boolean): Promise<{ checks: Check[]; close: () => Promise<void> }> {
  const logger = pino({ level: 'silent' });
  const dns = base && live ? createResolver(base.dns) : undefined;
  const config = base ?? offlineConfig([]);
  const all = await buildChecks(
    { ...config, checks: { disabled: [] } },
    { logger, now: Date.now, ...(dns ? { dns } : {}), store: createSharedStore({ logger, now: Date.now }) },
  );
  const disabled = new Set(config.checks.disabled);
  const checks = all.filter((c) => !disabled.has(c.name) && (c.effects === 'none' || (c.effects === 'network' && live)));
  for (const c of checks) if (isRulesAware(c)) c.onRulesLoaded(loaded);
  return {
    checks,
    close: async () => {
      for (const c of all) await c.close?.();
    },
  };
}

export async function runOffline(run: OfflineRun): Promise<OfflineResult> {
  const env = run.envelope;
  const ip = env.ip ?? DEFAULT_TEST_IP;
  const raw = run.message;
  const fromHeader = raw ? headerAddresses(raw, ['from'])[0] : undefined;
  const from = env.from ?? fromHeader ?? '';
  const to = env.to ?? (raw ? headerAddresses(raw, ['to', 'cc']) : []);
  const envelope = { ...env, ip, from, to };
  const config = run.config ?? offlineConfig([...new Set(to.map((a) => parseAddress(a)?.domain ?? '').filter(Boolean))]);
  const steps: StageStep[] = [];
  let lastFacts = new FactSet();
  const overrides = new Map(Object.entries(env.facts ?? {}));
  const rt: Runtime = {
    config,
    logger: pino({ level: 'silent' }),
    domains: new Set(config.domains.map(normalizeDomain)),
    checks: run.checks,
    policy: run.policy,
    backend: acceptingBackend,
    quarantine: undefined,
    spoolDir: join(tmpdir(), 'mailgate-rules-test'),
    stripHeaders: [],
    overrides,
    onStage: (stage, verdict, facts, recipient) => {
      steps.push(recipient === undefined ? { stage, verdict } : { stage, recipient, verdict });
      lastFacts = facts;
    },
    draining: false,
  };
  const core = new ConnectionCore(rt, { id: 'offline', ip, port: 25, localPort: 25, proxied: false }, 'offline');
  const last = stageIndex(run.lastStage ?? 'data');
  const lastVerdict = () => steps.at(-1)?.verdict ?? emptyVerdict();
  const result = (action: OfflineResult['action'], stage: Stage, reply?: SmtpReply, verdict = lastVerdict()): OfflineResult => ({
    action,
    stage,
    ...(reply ? { reply } : {}),
    verdict,
    steps,
    recipients,
    facts: lastFacts,
    envelope,
    size: raw?.length ?? 0,
  });
  const recipients: OfflineResult['recipients'] = [];
  const refused = (r: SmtpReply | undefined): r is SmtpReply => r !== undefined && !r.isOk;
  try {
    const c = await core.connect();
    if (refused(c)) return result(c.isPerm ? 'reject' : 'tempfail', 'connect', c);
    if (env.helo !== undefined) {
      const h = await core.heloStage(env.helo, true);
      if (refused(h)) return result(h.isPerm ? 'reject' : 'tempfail', 'helo', h);
    }
    if (last < stageIndex('mail')) return result('incomplete', 'mail');
    if (env.tls) core.tls = {};
    const m = await core.mail(from, {});
    if (refused(m)) return result(m.isPerm ? 'reject' : 'tempfail', 'mail', m);
    if (last < stageIndex('rcpt')) return result('incomplete', 'rcpt');
    let accepted = 0;
    let lastRefusal: SmtpReply | undefined;
    for (const address of to) {
      const r = await core.rcpt(address);
      const step = steps.at(-1);
      const verdict = step?.stage === 'rcpt' ? step.verdict : lastVerdict();
      recipients.push({
        address,
        action: r.isOk ? 'continue' : verdict.action === 'reject' || verdict.action === 'tempfail' ? verdict.action : r.isPerm ? 'reject' : 'tempfail',
        reply: r,
      });
      if (r.isOk) accepted++;
      else lastRefusal = r;
    }
    if (accepted === 0 && lastRefusal) {
      const step = [...steps].reverse().find((s) => s.stage === 'rcpt');
      return result(lastRefusal.isPerm ? 'reject' : 'tempfail', 'rcpt', lastRefusal, step?.verdict);
    }
    if (last < stageIndex('data')) return result('incomplete', 'data');
    const spool = new Spool(
      {
        maxBytes: config.limits.max_message_bytes,
        maxHeaderBytes: config.limits.max_header_bytes,
        maxLineBytes: config.limits.max_line_bytes,
        memoryBytes: 104_857_600,
        tmpDir: rt.spoolDir,
      },
      true,
      { nulBytes: config.smtp.nul_bytes },
    );
    await pipeline(Readable.from([raw ?? Buffer.alloc(0)]), spool);
    try {
      const d = await core.data(spool, spool.problem);
      const verdict = d.verdict ?? lastVerdict();
      const action: OfflineResult['action'] = d.action === 'error' ? 'tempfail' : d.action;
      return result(action, 'data', d.reply, verdict);
    } finally {
      spool.release();
    }
  } finally {
    await core.disconnect();
  }
}
