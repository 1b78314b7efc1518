// Text patterns used by conditions and list files: globs (`*`, `?`, case-insensitive, anchored)
// and regexes written either as a bare pattern or as `/pattern/flags`. Both run in time linear in
// the input: globs with a loop matcher, regexes on RE2 (re2js), so no pattern an operator writes
// can stall the event loop on hostile message data (issue 14, item 1).
import { RE2JS } from 're2js';

/** A compiled pattern: `test` says whether the text matches (globs: whole text; regexes: anywhere). */
export interface TextPattern {
  test(text: string): boolean;
  /** The pattern as written, for messages. */
  readonly source: string;
}

/**
 * Compiles a glob: `*` any run of characters, `?` one character; matched case-insensitively
 * against the whole text. The matcher is the classic greedy wildcard loop that only ever backs up
 * to the last `*`, so it runs in O(pattern × text) with no exponential or polynomial blow-up in
 * the number of stars (a backtracking `^a.*b.*c$` regex is O(text^stars)).
 */
export function compileGlob(glob: string): TextPattern {
  const pat = glob.toLowerCase();
  return { source: glob, test: (text: string) => globMatch(pat, text.toLowerCase()) };
}

/** @deprecated use compileGlob: kept so callers written against the old name still compile. */
export const globToRegExp = compileGlob;

/** `p` and `t` already lower-cased. */
export function globMatch(p: string, t: string): boolean {
  let pi = 0;
  let ti = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    const c = p[pi];
    if (c === '*') {
      starP = pi++;
      starT = ti;
    } else if (c !== undefined && (c === '?' || c === t[ti])) {
      pi++;
      ti++;
    } else if (starP >= 0) {
      // Let the last star swallow one more character and retry from there.
      pi = starP + 1;
      ti = ++starT;
    } else return false;
  }
  while (p[pi] === '*') pi++;
  return pi === p.length;
}

export function isGlob(text: string): boolean {
  return text.includes('*') || text.includes('?');
}

/** `g` and `y` make matching stateful, so they are refused. */
const ALLOWED_FLAGS = 'imsu';

/**
 * Compiles `/pattern/flags` or a bare pattern (no flags) on RE2. Throws an Error with a readable
 * message when the pattern or the flags are invalid, or when the pattern needs backtracking
 * (backreferences, lookahead/lookbehind), which RE2 refuses because it cannot run it in linear time.
 */
export function parseRegex(text: string): TextPattern {
  let pattern = text;
  let flags = '';
  if (looksLikeRegex(text)) {
    const close = text.lastIndexOf('/');
    pattern = text.slice(1, close);
    flags = text.slice(close + 1);
  }
  let re2Flags = 0;
  for (const f of flags) {
    if (!ALLOWED_FLAGS.includes(f)) throw new Error(`regex flags "${flags}" not allowed (use i, m, s, u)`);
    if (f === 'i') re2Flags |= RE2JS.CASE_INSENSITIVE;
    else if (f === 'm') re2Flags |= RE2JS.MULTILINE;
    else if (f === 's') re2Flags |= RE2JS.DOTALL;
    // u: RE2 always matches Unicode code points.
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(RE2JS.translateRegExp(pattern), re2Flags);
  } catch (err) {
    const why = (err as Error).message;
    const hint = /\\[1-9]|\(\?<?[=!]/.test(pattern) ? ' (backreferences and lookaround are not supported: patterns run on RE2, in linear time)' : '';
    throw new Error(`invalid regex: ${why}${hint}`);
  }
  return { source: text, test: (s: string) => re.test(s) };
}

/** A regex written `/.../flags` (as opposed to a literal value) in a list file. */
export function looksLikeRegex(text: string): boolean {
  if (text.length < 3 || text[0] !== '/') return false;
  const close = text.lastIndexOf('/');
  if (close < 2) return false;
  for (let i = close + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x61 || c > 0x7a) return false;
  }
  return true;
}
