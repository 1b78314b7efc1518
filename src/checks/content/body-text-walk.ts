// The body facts (message.body_text, message.body_html, message.body_truncated) read from the
// shared MIME walk instead of a second parse: one parse for every content check, with
// the same facts and settings (body_max_bytes caps each; the walk's max_text_bytes caps reading).
import type { Check } from '../../pipeline/check.ts';
import type { WalkLimits } from '../../message/mime-walk.ts';
import { bodyFacts } from './body-text.ts';
import { htmlToText } from '../../message/html-text.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';
import { walkOf } from './walk-result.ts';

export interface WalkBodyTextOptions {
  walkLimits?: WalkLimits;
  /** Fixed cap (tests); default: the rules' settings.body_max_bytes. */
  maxBytes?: number;
  /** Compute the facts even when no rule reads them. */
  always?: boolean;
}

export function createWalkBodyTextCheck(opts: WalkBodyTextOptions = {}): Check & RulesAware {
  let maxBytes = opts.maxBytes ?? 262_144;
  let wanted = opts.always ?? false;
  return {
    name: 'body-text',
    effects: 'none',
    stages: ['data'],
    facts: bodyFacts,
    needs: ['mime.*'],
    timeoutMs: 10_000,
    // Body matching is scoring, not a safety property.
    onFailure: 'continue',
    onRulesLoaded(loaded) {
      if (opts.maxBytes === undefined) maxBytes = loaded.settings.body_max_bytes;
      wanted = opts.always || bodyFacts.some((f) => loaded.policy.readsFact(f.name));
    },
    async run(input, out) {
      if (!input.message || !wanted) return;
      const w = await walkOf(input.message, opts.walkLimits);
      // htmlToText is a linear scanner, bounded by maxBytes of HTML (the walk capped it already).
      let html = w.html.length > maxBytes ? w.html.slice(0, maxBytes) : w.html;
      let text = w.text || (html ? htmlToText(html, maxBytes) : '');
      let truncated = w.textTruncated || w.html.length > maxBytes;
      if (text.length > maxBytes) {
        text = text.slice(0, maxBytes);
        truncated = true;
      }
      if (html.length > maxBytes) html = html.slice(0, maxBytes);
      out.facts.set('message.body_text', text);
      out.facts.set('message.body_html', html);
      out.facts.set('message.body_truncated', truncated);
    },
  };
}
