// A plain-text rendering of HTML good enough for matching (tags out, script/style/head dropped,
// block ends as newlines, entities decoded), in one linear pass: the regex pipeline it replaces
// froze the process for 14 s on a 281 KB `<script` body (issue 14, item 1).

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };
/** Elements whose content is not text. */
const SKIPPED = new Set(['script', 'style', 'head']);
/** Closing tags that end a line (as does `<br>`). */
const BLOCK_ENDS = new Set(['p', 'div', 'li', 'tr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6']);
/** Longest entity looked at (`&#x10FFFF;` is 10). */
const MAX_ENTITY = 32;

/**
 * Text of `html`, at most `maxChars` characters of it. Time is linear in the input: every
 * forward search either consumes what it scanned or is remembered as failed, so no position is
 * scanned twice by the same kind of search.
 */
export function htmlToText(html: string, maxChars: number): string {
  const out: string[] = [];
  let outLen = 0;
  const emit = (s: string) => {
    out.push(s);
    outLen += s.length;
  };
  /** Past this index there is no ">" at all: every "<" is literal text. */
  let noTagEnd = html.length + 1;
  /** Per skipped element: past this index there is no closing tag for it. */
  const noClose = new Map<string, number>();
  const n = html.length;
  let i = 0;
  let text = 0; // start of the pending text run
  const flushText = (end: number) => {
    if (end > text) emit(html.slice(text, end));
  };
  while (i < n && outLen < maxChars) {
    const c = html.charCodeAt(i);
    if (c === 0x3c /* < */ && i < noTagEnd) {
      const close = html.indexOf('>', i + 1);
      if (close < 0) {
        noTagEnd = i;
        continue;
      }
      flushText(i);
      const { name, closing } = tagName(html, i + 1, close);
      i = close + 1;
      if (!closing && SKIPPED.has(name)) {
        const end = findClose(html, name, i, noClose);
        if (end >= 0) {
          emit(' ');
          i = end;
        }
      } else if ((name === 'br' && !closing) || (closing && BLOCK_ENDS.has(name))) emit('\n');
      text = i;
    } else if (c === 0x26 /* & */) {
      // Bounded look-ahead: an unbounded indexOf(';') per "&" would be quadratic.
      let semi = -1;
      for (let k = i + 1; k < n && k <= i + MAX_ENTITY; k++) {
        if (html.charCodeAt(k) === 0x3b /* ; */) {
          semi = k;
          break;
        }
      }
      const decoded = semi > i ? decodeEntity(html.slice(i + 1, semi)) : undefined;
      if (decoded !== undefined) {
        flushText(i);
        emit(decoded);
        i = semi + 1;
        text = i;
      } else i++;
    } else i++;
  }
  if (outLen < maxChars) flushText(Math.min(i, n));
  // Cut, then trim again: the cut can end on whitespace (found by fuzzing).
  return collapseWhitespace(out.join('')).slice(0, maxChars).trimEnd();
}

/** Lower-cased tag name after "<" (and "/"), e.g. `<BR/>` → br. */
function tagName(html: string, from: number, to: number): { name: string; closing: boolean } {
  let i = from;
  const closing = html[i] === '/';
  if (closing) i++;
  const start = i;
  while (i < to && isNameChar(html.charCodeAt(i))) i++;
  return { name: html.slice(start, i).toLowerCase(), closing };
}

function isNameChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39);
}

/** Index just past `</name\s*>` at or after `from`, or -1 (remembered in `noClose`). */
function findClose(html: string, name: string, from: number, noClose: Map<string, number>): number {
  const known = noClose.get(name);
  if (known !== undefined && from >= known) return -1;
  let p = html.indexOf('</', from);
  while (p >= 0) {
    const q = p + 2;
    if (html.slice(q, q + name.length).toLowerCase() === name) {
      let k = q + name.length;
      while (k < html.length && isWs(html.charCodeAt(k))) k++;
      if (html[k] === '>') return k + 1;
    }
    p = html.indexOf('</', p + 2);
  }
  noClose.set(name, from);
  return -1;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b;
}

/** `#x41`, `#65` or a named entity (without & and ;); undefined if not one we decode. */
function decodeEntity(e: string): string | undefined {
  if (e.length === 0) return undefined;
  if (e[0] === '#') {
    const hex = e[1] === 'x' || e[1] === 'X';
    const digits = e.slice(hex ? 2 : 1);
    if (digits.length === 0) return undefined;
    for (const d of digits) if (!(hex ? /[0-9a-fA-F]/ : /[0-9]/).test(d)) return undefined;
    const v = parseInt(digits, hex ? 16 : 10);
    return Number.isFinite(v) && v > 0 && v < 0x110000 ? String.fromCodePoint(v) : undefined;
  }
  for (const d of e) if (!/[a-zA-Z]/.test(d)) return undefined;
  return ENTITIES[e.toLowerCase()];
}

/**
 * Runs of spaces/tabs become one space; a whitespace run holding two or more newlines becomes
 * one newline (keeping the collapsed spaces around it); the result is trimmed.
 */
export function collapseWhitespace(s: string): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    if (!isWs(s.charCodeAt(i))) {
      const start = i;
      while (i < s.length && !isWs(s.charCodeAt(i))) i++;
      out += s.slice(start, i);
      continue;
    }
    const start = i;
    let first = -1;
    let last = -1;
    let newlines = 0;
    while (i < s.length && isWs(s.charCodeAt(i))) {
      if (s[i] === '\n') {
        if (first < 0) first = i;
        last = i;
        newlines++;
      }
      i++;
    }
    if (newlines >= 2) out += spaces(s.slice(start, first)) + '\n' + spaces(s.slice(last + 1, i));
    else out += spaces(s.slice(start, i));
  }
  return out.trim();
}

/** Each run of spaces/tabs → one space; other whitespace kept. */
function spaces(run: string): string {
  let out = '';
  let inRun = false;
  for (const ch of run) {
    if (ch === ' ' || ch === '\t') {
      if (!inRun) out += ' ';
      inRun = true;
    } else {
      out += ch;
      inRun = false;
    }
  }
  return out;
}
