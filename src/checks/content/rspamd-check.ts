// The `rspamd` check: the message to Rspamd's /checkv2 (HTTP protocol, with the envelope in the
// From/Rcpt/IP/Helo headers), and its score, action and symbols back as rspamd.* facts. Rspamd
// is one more opinion the rules combine; its own action is a fact, not a decision.
import type { Check } from '../../pipeline/check.ts';
import type { FactRecord, FactSpec } from '../../pipeline/facts.ts';
import type { RspamdConfig } from '../../config/content-schema.ts';
import { contentMetrics } from './content-metrics.ts';
import { envelopeOf, headerSafe, postMessage } from './http-post.ts';

export const RSPAMD_ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'] as const;

export const rspamdFacts: readonly FactSpec[] = [
  { name: 'rspamd.score', stage: 'data', type: 'number', description: 'Rspamd score of the message' },
  { name: 'rspamd.required_score', stage: 'data', type: 'number', description: 'Rspamd score of its reject action' },
  {
    name: 'rspamd.action',
    stage: 'data',
    type: 'string',
    values: RSPAMD_ACTIONS,
    description: 'Action Rspamd recommends: no action, greylist, add header, rewrite subject, soft reject, reject',
  },
  { name: 'rspamd.symbols', stage: 'data', type: 'string[]', description: 'Names of the Rspamd symbols that fired, e.g. MISSING_DATE' },
  { name: 'rspamd.symbol_scores', stage: 'data', type: 'records', fields: ['name', 'score'], description: 'Every Rspamd symbol with its score' },
  { name: 'rspamd.skipped', stage: 'data', type: 'boolean', description: 'Not sent: larger than rspamd.max_bytes, or Rspamd skipped it (is_skipped)' },
];

interface CheckV2 {
  score?: number;
  required_score?: number;
  action?: string;
  is_skipped?: boolean;
  symbols?: Record<string, { name?: string; score?: number }>;
}

export function createRspamdCheck(cfg: RspamdConfig): Check {
  const url = new URL('checkv2', cfg.url.endsWith('/') ? cfg.url : `${cfg.url}/`);
  return {
    name: 'rspamd',
    effects: 'network',
    stages: ['data'],
    facts: rspamdFacts,
    timeoutMs: cfg.timeout_ms + 1000,
    onFailure: cfg.on_failure,
    async run(input, out) {
      const msg = input.message;
      if (!msg) return;
      if (msg.size > cfg.max_bytes) {
        contentMetrics.scannerCalls.inc({ scanner: 'rspamd', result: 'skipped' });
        out.facts.set('rspamd.skipped', true);
        return;
      }
      const env = envelopeOf(input.facts);
      const headers: Record<string, string | string[]> = { 'Content-Type': 'message/rfc822' };
      if (env.from) headers.From = headerSafe(env.from);
      if (env.rcpts.length) headers.Rcpt = env.rcpts.slice(0, 100).map(headerSafe);
      if (env.ip) headers.IP = headerSafe(env.ip);
      if (env.helo) headers.Helo = headerSafe(env.helo);
      if (cfg.password) headers.Password = cfg.password;
      let answer: CheckV2;
      try {
        const r = await postMessage(url, headers, () => msg.stream(), msg.size, cfg.timeout_ms, input.signal);
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body.slice(0, 200)}`);
        answer = JSON.parse(r.body) as CheckV2;
      } catch (err) {
        contentMetrics.scannerCalls.inc({ scanner: 'rspamd', result: 'error' });
        throw new Error(`rspamd ${url.origin}: ${(err as Error).message}`);
      }
      contentMetrics.scannerCalls.inc({ scanner: 'rspamd', result: 'ok' });
      const symbols: FactRecord[] = Object.entries(answer.symbols ?? {})
        .slice(0, 500)
        .map(([name, s]) => ({ name, score: typeof s.score === 'number' ? s.score : 0 }));
      const action = (RSPAMD_ACTIONS as readonly string[]).includes(answer.action ?? '') ? (answer.action as string) : 'no action';
      out.facts.set('rspamd.score', typeof answer.score === 'number' ? answer.score : 0);
      out.facts.set('rspamd.required_score', typeof answer.required_score === 'number' ? answer.required_score : 0);
      out.facts.set('rspamd.action', action);
      out.facts.set(
        'rspamd.symbols',
        symbols.map((s) => String(s.name)),
      );
      out.facts.set('rspamd.symbol_scores', symbols);
      out.facts.set('rspamd.skipped', answer.is_skipped === true);
    },
  };
}
