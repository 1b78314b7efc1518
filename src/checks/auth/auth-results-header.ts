// Header work for sender authentication: recognising incoming Authentication-Results and ARC sets
// that claim our authserv-id (RFC 8601 section 5: a forged "pass" must never reach the mailbox),
// the configurable strip list, and writing our own Authentication-Results value.

/** Removes leading CFWS comments "(...)" and whitespace (RFC 5322 3.2.2). */
function skipCfws(s: string): string {
  let out = s.trimStart();
  while (out.startsWith('(')) {
    let depth = 0;
    let i = 0;
    for (; i < out.length; i++) {
      const c = out[i];
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) break;
    }
    out = out.slice(i + 1).trimStart();
  }
  return out;
}

/** The authserv-id an Authentication-Results value starts with (RFC 8601 2.2: a token or quoted-string). */
export function authservIdOf(value: string): string {
  const v = skipCfws(value);
  if (v.startsWith('"')) {
    const m = /^"((?:[^"\\]|\\.)*)"/.exec(v);
    return (m?.[1] ?? '').replace(/\\(.)/g, '$1').toLowerCase();
  }
  return (/^[^\s;()]+/.exec(v)?.[0] ?? '').toLowerCase();
}

/** ARC-Authentication-Results: "i=N;" then an Authentication-Results payload (RFC 8617 4.1.1). */
export function parseAar(value: string): { instance: number; authservId: string } | undefined {
  const m = /^\s*i\s*=\s*(\d{1,2})\s*;(.*)$/s.exec(skipCfws(value));
  if (!m) return undefined;
  return { instance: Number(m[1]), authservId: authservIdOf(m[2] ?? '') };
}

/** The i= of an ARC-Seal or ARC-Message-Signature (a tag-list, RFC 8617 4.1.2/4.1.3). */
export function arcInstanceOf(value: string): number | undefined {
  const m = /(?:^|;)\s*i\s*=\s*(\d{1,2})\s*(?:;|$)/.exec(value);
  return m ? Number(m[1]) : undefined;
}

const norm = (id: string): string => id.toLowerCase().replace(/\.$/, '');

export interface ForgedResults {
  /** Authentication-Results fields claiming one of our ids. */
  authResults: number;
  /** ARC instances whose ARC-Authentication-Results claims one of our ids: the whole set is removed. */
  arcInstances: ReadonlySet<number>;
}

export function findForged(headers: ReadonlyArray<{ name: string; value: string }>, ourIds: readonly string[]): ForgedResults {
  const ids = new Set(ourIds.map(norm));
  let authResults = 0;
  const arcInstances = new Set<number>();
  for (const h of headers) {
    const name = h.name.toLowerCase();
    if (name === 'authentication-results' && ids.has(norm(authservIdOf(h.value)))) authResults++;
    if (name === 'arc-authentication-results') {
      const aar = parseAar(h.value);
      if (aar && ids.has(norm(aar.authservId))) arcInstances.add(aar.instance);
    }
  }
  return { authResults, arcInstances };
}

/** A predicate for HeaderEdits.remove: forged results for our ids (and their ARC sets), plus `strip` names/globs. */
export function removalPredicate(ourIds: readonly string[], forged: ForgedResults, strip: readonly string[]): (name: string, value: string) => boolean {
  const ids = new Set(ourIds.map(norm));
  const exact = new Set(strip.filter((s) => !s.endsWith('*')).map((s) => s.toLowerCase()));
  const prefixes = strip.filter((s) => s.endsWith('*')).map((s) => s.slice(0, -1).toLowerCase());
  return (rawName, value) => {
    const name = rawName.trim().toLowerCase();
    if (exact.has(name) || prefixes.some((p) => name.startsWith(p))) return true;
    if (name === 'authentication-results') return ids.has(norm(authservIdOf(value)));
    if (name === 'arc-authentication-results') {
      const aar = parseAar(value);
      return aar !== undefined && forged.arcInstances.has(aar.instance);
    }
    if ((name === 'arc-seal' || name === 'arc-message-signature') && forged.arcInstances.size > 0) {
      const i = arcInstanceOf(value);
      return i !== undefined && forged.arcInstances.has(i);
    }
    return false;
  };
}

/** The Authentication-Results value (RFC 8601 2.2): "authserv-id; resinfo; resinfo", unfolded. */
export function authResultsValue(authservId: string, resinfos: readonly string[]): string {
  return [authservId, ...resinfos].join('; ');
}

/** Splits "Name: value" (as mailauth returns generated fields) into name and unfolded value. */
export function splitField(field: string): { name: string; value: string } {
  const colon = field.indexOf(':');
  return {
    name: field.slice(0, colon).trim(),
    value: field
      .slice(colon + 1)
      .replace(/\r?\n[ \t]+/g, ' ')
      .trim(),
  };
}
