// A generic HTTP hook (`content.hooks`): POSTs the raw message with the envelope in X-Mailgate-*
// headers and takes facts from the JSON answer — only the ones its config declares, with their
// types, as hook.<name>.<fact>. A site plugs in its own checker this way.
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec, FactValue } from '../../pipeline/facts.ts';
import type { HookConfig } from '../../config/content-schema.ts';
import { contentMetrics } from './content-metrics.ts';
import { envelopeOf, headerSafe, postMessage } from './http-post.ts';

export function hookFacts(cfg: HookConfig): FactSpec[] {
  const base = `hook.${cfg.name}`;
  return [
    ...Object.entries(cfg.facts).map(
      ([fact, type]): FactSpec => ({ name: `${base}.${fact}`, stage: 'data', type, description: `Answer "${fact}" of the ${cfg.name} HTTP hook` }),
    ),
    { name: `${base}.skipped`, stage: 'data', type: 'boolean', description: `Not sent to the ${cfg.name} hook: larger than its max_bytes` },
  ];
}

function coerce(v: unknown, type: HookConfig['facts'][string]): FactValue | undefined {
  switch (type) {
    case 'string':
      return typeof v === 'string' ? v.slice(0, 1000) : undefined;
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
    case 'boolean':
      return typeof v === 'boolean' ? v : undefined;
    case 'string[]':
      return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]).slice(0, 200).map((x) => x.slice(0, 1000)) : undefined;
  }
}

export function createHttpHookCheck(cfg: HookConfig): Check {
  const url = new URL(cfg.url);
  const base = `hook.${cfg.name}`;
  return {
    name: `hook-${cfg.name}`,
    effects: 'network',
    stages: ['data'],
    facts: hookFacts(cfg),
    timeoutMs: cfg.timeout_ms + 1000,
    onFailure: cfg.on_failure,
    async run(input, out) {
      const msg = input.message;
      if (!msg) return;
      if (msg.size > cfg.max_bytes) {
        contentMetrics.scannerCalls.inc({ scanner: 'hook', result: 'skipped' });
        out.facts.set(`${base}.skipped`, true);
        return;
      }
      const env = envelopeOf(input.facts);
      const headers: Record<string, string> = {
        ...cfg.headers,
        'Content-Type': 'message/rfc822',
        'X-Mailgate-Mail-From': headerSafe(env.from),
        'X-Mailgate-Rcpt-To': headerSafe(env.rcpts.slice(0, 100).join(',')),
        'X-Mailgate-Client-IP': headerSafe(env.ip),
        'X-Mailgate-Helo': headerSafe(env.helo),
      };
      let answer: unknown;
      try {
        const r = await postMessage(url, headers, () => msg.stream(), msg.size, cfg.timeout_ms, input.signal);
        if (r.status < 200 || r.status > 299) throw new Error(`HTTP ${r.status}`);
        answer = JSON.parse(r.body);
      } catch (err) {
        contentMetrics.scannerCalls.inc({ scanner: 'hook', result: 'error' });
        throw new Error(`hook ${cfg.name}: ${(err as Error).message}`);
      }
      contentMetrics.scannerCalls.inc({ scanner: 'hook', result: 'ok' });
      // The answer is {"facts": {...}} or the facts object itself.
      const obj = (answer && typeof answer === 'object' && 'facts' in answer ? (answer as { facts: unknown }).facts : answer) as Record<string, unknown> | null;
      if (!obj || typeof obj !== 'object') throw new Error(`hook ${cfg.name}: the answer is not a JSON object`);
      for (const [fact, type] of Object.entries(cfg.facts)) {
        const v = coerce(obj[fact], type);
        if (v !== undefined) out.facts.set(`${base}.${fact}`, v);
      }
      out.facts.set(`${base}.skipped`, false);
    },
  };
}
