// `{fact.name}` interpolation in reply texts and added headers (e.g. "try again in
// {ratelimit.retry_after} seconds"). Values come from the client, so they are made safe for an
// SMTP reply line or a header field: no control characters (CR/LF would inject), ASCII only.
import type { FactSet, FactValue } from '../pipeline/facts.ts';
import type { FactLookup } from './fact-lookup.ts';
import { readFact } from './fact-lookup.ts';

/** Names that are not facts: the message's score so far. */
export const TEMPLATE_SPECIALS = ['score'] as const;

export interface Template {
  readonly text: string;
  /** Facts the template reads (they count for the rule's stage). */
  readonly facts: ReadonlySet<string>;
  render(facts: FactSet, extra: { score: number }): string;
}

type Part = string | { name: string };

const MAX_VALUE = 200;

export function safeText(s: string, max = MAX_VALUE): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f\x7f]+/g, ' ').replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

function show(v: FactValue | undefined): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ');
  return String(v);
}

export function formatScore(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/**
 * Parses `text`. `{{` and `}}` stand for literal braces. Unknown names and record facts are
 * reported through `problem` (one message each); the template still compiles.
 */
export function compileTemplate(text: string, lookup: FactLookup, problem: (message: string) => void): Template {
  const parts: Part[] = [];
  const facts = new Set<string>();
  let lit = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const next = text[i + 1];
    if ((ch === '{' && next === '{') || (ch === '}' && next === '}')) {
      lit += ch;
      i++;
    } else if (ch === '{') {
      const end = text.indexOf('}', i);
      if (end < 0) {
        problem(`unclosed "{" in ${JSON.stringify(text)} (write "{{" for a literal brace)`);
        break;
      }
      const name = text.slice(i + 1, end).trim();
      if (lit) parts.push(lit);
      lit = '';
      if (!(TEMPLATE_SPECIALS as readonly string[]).includes(name)) {
        const spec = lookup.get(name);
        if (!spec) problem(`unknown fact "{${name}}" in ${JSON.stringify(text)}`);
        else if (spec.type === 'records') problem(`"{${name}}" is a list of records and cannot be written into text`);
        facts.add(name);
      }
      parts.push({ name });
      i = end;
    } else lit += ch;
  }
  if (lit) parts.push(lit);
  return {
    text,
    facts,
    render(fs, extra) {
      let out = '';
      for (const p of parts) {
        if (typeof p === 'string') out += p;
        else if (p.name === 'score') out += formatScore(extra.score);
        else out += safeText(show(readFact(fs, p.name)));
      }
      return safeText(out, 900);
    },
  };
}
