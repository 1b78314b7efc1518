// Text patterns used by conditions and list files: globs (`*`, `?`, case-insensitive, anchored)
// and regexes written either as a bare pattern or as `/pattern/flags`.

/** Compiles a glob: `*` any run of characters, `?` one character; matched case-insensitively. */
export function globToRegExp(glob: string): RegExp {
  let src = '';
  for (const ch of glob) {
    if (ch === '*') src += '.*';
    else if (ch === '?') src += '.';
    else src += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${src}$`, 'is');
}

export function isGlob(text: string): boolean {
  return text.includes('*') || text.includes('?');
}

/** `g` and `y` make `test()` stateful, so they are refused. */
const ALLOWED_FLAGS = /^[imsu]*$/;

/**
 * Compiles `/pattern/flags` or a bare pattern (no flags). Throws an Error with a readable
 * message when the pattern or the flags are invalid.
 */
export function parseRegex(text: string): RegExp {
  let pattern = text;
  let flags = '';
  const m = /^\/(.*)\/([a-z]*)$/s.exec(text);
  if (m) {
    pattern = m[1] ?? '';
    flags = m[2] ?? '';
  }
  if (!ALLOWED_FLAGS.test(flags)) throw new Error(`regex flags "${flags}" not allowed (use i, m, s, u)`);
  try {
    return new RegExp(pattern, flags);
  } catch (err) {
    throw new Error(`invalid regex: ${(err as Error).message}`);
  }
}

/** A regex written `/.../flags` (as opposed to a literal value) in a list file. */
export function looksLikeRegex(text: string): boolean {
  return /^\/.+\/[a-z]*$/s.test(text);
}
