// Header block parsing and rewriting (RFC 5322 2.2): fields in order, unfolded for matching, and
// the rewritten block mailgate relays (our trace fields prepended, distrusted fields removed).
export interface HeaderField {
  /** Name as written. */
  readonly name: string;
  /** Value unfolded (CRLF + WSP → WSP), leading whitespace trimmed, not decoded. */
  readonly value: string;
  /** The raw field including folding and its final CRLF, for byte-exact relaying. */
  readonly raw: string;
}

const NON_ASCII = /[\x80-\xff]/;

/** Splits a header block (ending with the empty line, or not) into fields. */
export function parseHeaderBlock(block: Buffer): HeaderField[] {
  // latin1 keeps every byte as one char, so raw fields round-trip exactly.
  const text = block.toString('latin1');
  // An ASCII block (most are) reads the same as UTF-8: no per-field re-decoding.
  const ascii = !NON_ASCII.test(text);
  const fields: HeaderField[] = [];
  let start = 0;
  const n = text.length;
  while (start < n) {
    let end = text.indexOf('\r\n', start);
    if (end < 0) end = n;
    if (end === start) break; // empty line: end of header
    // Extend over folded continuation lines.
    let stop = end;
    while (stop + 2 < n && (text[stop + 2] === ' ' || text[stop + 2] === '\t')) {
      const next = text.indexOf('\r\n', stop + 2);
      stop = next < 0 ? n : next;
    }
    const raw = text.slice(start, Math.min(n, stop + 2));
    const line = text.slice(start, stop);
    const colon = line.indexOf(':');
    const orphan = line.startsWith(' ') || line.startsWith('\t');
    if (colon > 0 && !orphan) {
      const name = line.slice(0, colon).trim();
      const value = line
        .slice(colon + 1)
        .replace(/\r\n([ \t])/g, '$1')
        .trim();
      fields.push({ name, value: ascii ? value : Buffer.from(value, 'latin1').toString('utf8'), raw });
    } else {
      // A line without a colon (broken header): keep it as a nameless field so it is relayed.
      fields.push({ name: '', value: line, raw });
    }
    start = stop + 2;
  }
  return fields;
}

/**
 * A field that starts with whitespace: only possible for the first line of a block (later ones
 * are folded into the field above), and never a valid header field.
 */
export function isOrphanContinuation(f: HeaderField): boolean {
  return f.raw.startsWith(' ') || f.raw.startsWith('\t');
}

/** Folds a header value we generate so no line exceeds 78 characters where possible. */
export function foldHeader(name: string, value: string): string {
  // Words are what runs of spaces separate; with single spaces only, a line's words joined by
  // spaces are a slice of the value, so a line is built once instead of word by word.
  if (value.includes('  ')) return foldWords(name, value.split(/ +/));
  let out = '';
  let first = true;
  let hasWords = false;
  let from = 0;
  let to = 0;
  let length = name.length + 1;
  const line = (): string => (first ? (hasWords ? `${name}: ${value.slice(from, to)}` : `${name}:`) : `\t${value.slice(from, to)}`);
  for (let pos = 0; ; ) {
    const sp = value.indexOf(' ', pos);
    const end = sp < 0 ? value.length : sp;
    const full = length + 1 + (end - pos) > 78 ? line() : undefined;
    if (full !== undefined && full.trim().length > name.length + 1) {
      out += `${full}\r\n`;
      first = false;
      from = pos;
      length = end - pos + 1;
    } else {
      if (!hasWords) from = pos;
      length += 1 + (end - pos);
    }
    hasWords = true;
    to = end;
    if (sp < 0) break;
    pos = sp + 1;
  }
  return `${out}${line()}\r\n`;
}

/** foldHeader over words: each added to the line, a new line (tab-indented) when it would pass 78. */
function foldWords(name: string, words: readonly string[]): string {
  let line = `${name}:`;
  const lines: string[] = [];
  for (const w of words) {
    if (line.length + 1 + w.length > 78 && line.trim().length > name.length + 1) {
      lines.push(line);
      line = `\t${w}`;
    } else {
      line += ` ${w}`;
    }
  }
  lines.push(line);
  return lines.join('\r\n') + '\r\n';
}

/**
 * Builds the header block to relay: `prepend` fields on top (in order), then the original fields
 * minus those `remove` matches, byte for byte, then the empty line if the original had one.
 */
export function rewriteHeaderBlock(
  fields: readonly HeaderField[],
  hadEmptyLine: boolean,
  prepend: ReadonlyArray<{ name: string; value: string }>,
  remove: ReadonlyArray<(name: string, value: string) => boolean>,
): Buffer {
  let out = '';
  for (const h of prepend) out += foldHeader(h.name, h.value);
  const parts: Buffer[] = [Buffer.from(out, 'utf8')];
  let kept = '';
  for (const f of fields) {
    if (f.name && remove.some((r) => r(f.name, f.value))) continue;
    // A block that opens with whitespace would read as a continuation of the last field we
    // prepend (RFC 5322 2.2.3 unfolding), e.g. extending our Authentication-Results with
    // "dkim=pass header.d=paypal.com": such an orphan continuation belongs to no field, so it
    // is dropped (issue 14, item 2).
    if (isOrphanContinuation(f)) continue;
    kept += f.raw;
  }
  parts.push(Buffer.from(kept, 'latin1'));
  if (hadEmptyLine) parts.push(Buffer.from('\r\n'));
  return Buffer.concat(parts);
}
