// Which facts rules may read: the FactSpecs checks declare, plus the dynamic `header.<Name>` facts
// the rules engine derives itself from `message.headers` (all values of that header, decoded).
import type { FactSet, FactSpec, FactValue, FactRecord } from '../pipeline/facts.ts';
import { decodeHeaderValue } from './header-decode.ts';

export const HEADER_PREFIX = 'header.';
/** RFC 5322 §3.6.8: a field name is printable US-ASCII except colon. */
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

export interface FactLookup {
  /** The spec of a fact name, including dynamic `header.*` names; undefined when unknown. */
  get(name: string): FactSpec | undefined;
  /** Declared names (not the dynamic ones), for "did you mean" hints and docs. */
  names(): string[];
}

export function isHeaderFactName(name: string): boolean {
  return name.startsWith(HEADER_PREFIX) && HEADER_NAME.test(name.slice(HEADER_PREFIX.length));
}

/**
 * Builds the lookup. A name declared twice with a different stage or type is a programming error
 * (two checks disagree about a fact), so it throws.
 */
export function createFactLookup(specs: Iterable<FactSpec>): FactLookup {
  const byName = new Map<string, FactSpec>();
  // Specs named with a `*` segment (`ratelimit.*.exceeded`) stand for a family of facts whose
  // middle part comes from configuration; `*` matches one segment of [a-z0-9_-].
  const families: Array<{ re: RegExp; spec: FactSpec }> = [];
  for (const s of specs) {
    if (s.name.includes('*')) {
      const re = new RegExp(
        `^${s.name
          .split('*')
          .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('[a-z0-9_-]+')}$`,
      );
      families.push({ re, spec: s });
      continue;
    }
    const old = byName.get(s.name);
    if (old && (old.stage !== s.stage || old.type !== s.type)) {
      throw new Error(`fact ${s.name} declared twice with different stage/type (${old.stage}/${old.type}, ${s.stage}/${s.type})`);
    }
    if (!old) byName.set(s.name, s);
  }
  return {
    get(name) {
      const s = byName.get(name);
      if (s) return s;
      const fam = families.find((f) => f.re.test(name));
      if (fam) return { ...fam.spec, name };
      if (isHeaderFactName(name)) {
        return {
          name,
          stage: 'data',
          type: 'string[]',
          description: `Every value of the ${name.slice(HEADER_PREFIX.length)} header, RFC 2047-decoded`,
        };
      }
      return undefined;
    },
    names() {
      return [...byName.keys(), ...families.map((f) => f.spec.name)].sort();
    },
  };
}

/** Closest declared names to a misspelt one, for error messages. */
export function suggestFacts(lookup: FactLookup, name: string): string[] {
  const scored = lookup
    .names()
    .map((n) => ({ n, d: editDistance(n, name) }))
    .filter((x) => x.d <= Math.max(2, Math.floor(name.length / 4)))
    .sort((a, b) => a.d - b.d);
  return scored.slice(0, 3).map((x) => x.n);
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

/** Reads a fact, deriving `header.<Name>` from `message.headers` when the pipeline did not set it. */
export function readFact(facts: FactSet, name: string): FactValue | undefined {
  const v = facts.get(name);
  if (v !== undefined || !name.startsWith(HEADER_PREFIX)) return v;
  const headers = facts.get('message.headers');
  if (!Array.isArray(headers)) return undefined;
  const want = name.slice(HEADER_PREFIX.length).toLowerCase();
  const values: string[] = [];
  for (const h of headers as readonly FactRecord[]) {
    if (typeof h !== 'object' || h === null) continue;
    const n = h.name;
    if (typeof n === 'string' && n.toLowerCase() === want) values.push(decodeHeaderValue(String(h.value ?? '')));
  }
  return values.length > 0 ? values : undefined;
}
