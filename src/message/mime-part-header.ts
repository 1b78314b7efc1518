// The header block of one MIME part, read for the walk: Content-Type (type, charset, name,
// boundary), Content-Disposition (value, filename) and Content-Transfer-Encoding, with RFC 2231
// parameter continuations and RFC 2047 encoded words decoded. Reads the fields the way the
// walk's former parser (mailsplit 5.4 over libmime 5.3) did, so the content facts stay the same:
// a parameter given twice keeps its last value, a missing Content-Type is guessed from the file
// name's extension.
import { posix } from 'node:path';
import { libmime } from './libmime-lazy.ts';

export interface PartHeader {
  /** Lower-cased type ("" when the header gives none). */
  contentType: string;
  charset: string;
  /** Lower-cased disposition value, encoded words decoded ("" when none). */
  disposition: string;
  /** Disposition filename, else Content-Type name; encoded words decoded ("" when none). */
  filename: string;
  /** Lower-cased transfer encoding, comments removed ("" when none). */
  encoding: string;
  /** The boundary parameter as bytes (undefined when none). */
  boundary: Buffer | undefined;
  /** The first Content-Type field's value as written (unfolded, trimmed). */
  contentTypeField: string;
}

interface HeaderValue {
  value: string;
  params: Map<string, string>;
}

/**
 * A structured header value (`type/sub; key=value; key="quoted"`): the value and its
 * parameters, keys lower-cased, the last of a repeated key winning; RFC 2231 `key*0*=` segments
 * joined and `charset'lang'%XX` values decoded.
 */
export function parseHeaderValue(str: string): HeaderValue {
  const parsed = str.includes('"') || str.includes('\\') ? parseQuoted(str) : parsePlain(str);
  for (const k of parsed.params.keys()) {
    if (k.includes('*')) {
      joinContinuations(parsed.params);
      break;
    }
  }
  return parsed;
}

/** parseHeaderValue without quoted strings or escapes: `;` and `=` found with indexOf. */
function parsePlain(str: string): HeaderValue {
  const params = new Map<string, string>();
  let head = '';
  let key: string | undefined;
  let pos = 0;
  for (;;) {
    const semi = str.indexOf(';', pos);
    const v = (semi < 0 ? str.slice(pos) : str.slice(pos, semi)).trim();
    if (key === undefined) head = v;
    else params.set(key, v);
    if (semi < 0) break;
    // A parameter name runs to the next "=" (a ";" before it is part of the name, as before).
    const eq = str.indexOf('=', semi + 1);
    if (eq < 0) {
      // A key without a value (`attachment; inline`) is a parameter with an empty value.
      const rest = str.slice(semi + 1).trim();
      if (rest) params.set(rest.toLowerCase(), '');
      break;
    }
    key = str
      .slice(semi + 1, eq)
      .trim()
      .toLowerCase();
    pos = eq + 1;
  }
  return { value: head, params };
}

function parseQuoted(str: string): HeaderValue {
  const params = new Map<string, string>();
  let head: string | undefined;
  let key: string | undefined;
  let inKey = false;
  let value = '';
  let quote = false;
  let escaped = false;
  for (let i = 0; i < str.length; i++) {
    const chr = str.charAt(i);
    if (inKey) {
      if (chr === '=') {
        key = value.trim().toLowerCase();
        inKey = false;
        value = '';
      } else value += chr;
      continue;
    }
    if (escaped) {
      value += chr;
    } else if (chr === '\\') {
      escaped = true;
      continue;
    } else if (chr === '"') {
      // A quote toggles quoting; the quote characters themselves are not part of the value.
      quote = !quote;
    } else if (!quote && chr === ';') {
      if (key === undefined) head = value.trim();
      else params.set(key, value.trim());
      inKey = true;
      value = '';
    } else value += chr;
    escaped = false;
  }
  value = value.trim();
  if (!inKey) {
    if (key === undefined) head = value;
    else params.set(key, value);
  } else if (value) {
    // A key without a value (`attachment; inline`) is a parameter with an empty value.
    params.set(value.toLowerCase(), '');
  }
  return { value: head ?? '', params };
}

/** RFC 2231 §3–4: `name*0`, `name*1*`, `name*` segments → one decoded `name`. */
function joinContinuations(params: Map<string, string>): void {
  let segments: Map<string, { charset: string; values: Array<{ nr: number; value: string }> }> | undefined;
  for (const [k, raw] of [...params]) {
    const star = k.indexOf('*');
    if (star < 0) continue;
    const m = /\*((\d+)\*?)?$/.exec(k);
    if (!m) continue;
    const name = k.slice(0, m.index).toLowerCase();
    segments ??= new Map();
    let seg = segments.get(name);
    if (!seg) {
      seg = { charset: '', values: [] };
      segments.set(name, seg);
    }
    const nr = Number(m[2]) || 0;
    let value = raw;
    const ext = nr === 0 && m[0].endsWith('*') ? /^([^']*)'[^']*'(.*)$/.exec(value) : null;
    if (ext) {
      seg.charset = ext[1] || 'utf-8';
      value = ext[2] ?? '';
    }
    seg.values.push({ nr, value });
    params.delete(k);
  }
  if (!segments) return;
  for (const [name, seg] of segments) {
    const joined = seg.values
      .sort((a, b) => a.nr - b.nr)
      .map((v) => v.value)
      .join('');
    if (seg.charset) {
      // %XX percent-encoding → a Q encoded word, decoded by libmime's charset tables.
      const q = joined.replace(/[=?_\s]/g, (s) => (s === ' ' ? '_' : `%${s.charCodeAt(0).toString(16).padStart(2, '0')}`)).replace(/%/g, '=');
      params.set(name, decodeWords(`=?${seg.charset}?Q?${q}?=`));
    } else params.set(name, decodeWords(joined));
  }
}

function decodeWords(s: string): string {
  // libmime only rewrites encoded words (and its own NUL-delimited join markers).
  if (!s.includes('=?') && !s.includes('\x00')) return s;
  try {
    return libmime().decodeWords(s);
  } catch {
    // An unknown charset: keep the text as written.
    return s;
  }
}

/** A file name's extension, without the dot ("" when none). */
function extensionOf(name: string): string {
  return posix.parse(name).ext.replace(/^\./, '');
}

/** The three fields the walk reads, by lower-cased name. */
type Wanted = 'content-type' | 'content-disposition' | 'content-transfer-encoding';
const WANTED: ReadonlySet<string> = new Set<Wanted>(['content-type', 'content-disposition', 'content-transfer-encoding']);

/**
 * The first Content-Type, Content-Disposition and Content-Transfer-Encoding field lines of a
 * header block (latin1 text), each unfolded into one line (continuation lines joined with CRLF,
 * RFC 5322 §2.2.3). Lines end at LF, a CR before it dropped; an mbox "From " line or an HTTP
 * request line opening the block is not a field. Other fields are skipped without being joined.
 */
function wantedFields(block: string): Map<Wanted, string> {
  const found = new Map<Wanted, string>();
  let end = block.length;
  while (end > 0 && (block.charCodeAt(end - 1) === 0x0a || block.charCodeAt(end - 1) === 0x0d)) end--;
  // One field at a time: its first physical line [p, stop), its last one ending at fieldEnd;
  // strings are made only for the first line of the block and for names long enough to be wanted.
  for (let p = 0, first = true; ; first = false) {
    let lf = block.indexOf('\n', p);
    let last = lf < 0 || lf >= end;
    const stop = lineStop(block, p, lf, last, end);
    let fieldEnd = stop;
    let lines = 1;
    let bareLf = false;
    let next = last ? -1 : lf + 1;
    while (!last && (block.charCodeAt(next) === 0x20 || block.charCodeAt(next) === 0x09)) {
      if (block.charCodeAt(lf - 1) !== 0x0d) bareLf = true;
      const q = next;
      lf = block.indexOf('\n', q);
      last = lf < 0 || lf >= end;
      fieldEnd = lineStop(block, q, lf, last, end);
      lines++;
      next = last ? -1 : lf + 1;
    }
    // The lines joined with CRLF: the text itself unless a line ended with a bare LF.
    const joined = (): string => (lines === 1 || !bareLf ? block.slice(p, fieldEnd) : joinLines(block, p, fieldEnd, end));
    const skip = first && (/^From /i.test(block.slice(p, stop)) || /^POST /i.test(block.slice(p, stop)));
    if (!skip) {
      const colon = block.indexOf(':', p);
      let name = '';
      // trim() only shortens a name: one shorter than the shortest wanted can not be one.
      if (colon >= 0 && colon < stop) name = colon - p >= MIN_WANTED ? block.slice(p, colon) : '';
      else if (lines > 1) name = joinedKey(joined());
      const key = name === '' ? '' : name.trim().toLowerCase();
      if (WANTED.has(key) && !found.has(key as Wanted)) found.set(key as Wanted, joined());
    }
    if (last) break;
    p = next;
  }
  return found;
}

const MIN_WANTED = Math.min(...[...WANTED].map((k) => k.length));

/** Where a physical line's text ends: before its CR LF (or LF), or at the end of the block's text. */
function lineStop(block: string, start: number, lf: number, last: boolean, end: number): number {
  if (last) return end;
  return lf > start && block.charCodeAt(lf - 1) === 0x0d ? lf - 1 : lf;
}

/** The physical lines of [start, stop) joined with CRLF whatever ended them (LF or CR LF). */
function joinLines(block: string, start: number, stop: number, end: number): string {
  let out = '';
  for (let p = start; ; ) {
    const lf = block.indexOf('\n', p);
    const last = lf < 0 || lf >= stop;
    out += block.slice(p, last ? stop : lineStop(block, p, lf, false, end));
    if (last) return out;
    out += '\r\n';
    p = lf + 1;
  }
}

/** The name part of a field whose colon is on a continuation line ("" without a colon). */
function joinedKey(line: string): string {
  const colon = line.indexOf(':');
  return colon < 0 ? '' : line.slice(0, colon);
}

/** The value of a field line, unfolded and trimmed (libmime's decodeHeader). */
function fieldValue(line: string): string {
  if (!line.includes('\r') && !line.includes('\n')) {
    // One line: the value is what follows the first colon, when something precedes it.
    const t = line.trim();
    const colon = t.indexOf(':');
    return colon > 0 ? t.slice(colon + 1).trim() : '';
  }
  const flat = line.replace(/(?:\r?\n|\r)[ \t]*/g, ' ').trim();
  const m = /^\s*([^:]+):(.*)$/.exec(flat);
  return m ? (m[2] ?? '').trim() : '';
}

/** Reads the MIME fields of a part's header block (raw bytes, as received). */
export function parsePartHeader(block: Buffer): PartHeader {
  const fields = wantedFields(block.toString('latin1'));
  const field = (k: Wanted) => {
    const line = fields.get(k);
    return line === undefined ? undefined : fieldValue(line);
  };
  const ct = field('content-type');
  const cd = field('content-disposition');
  const cte = field('content-transfer-encoding');
  const disp = parseHeaderValue(cd ?? '');
  let ctValue = ct;
  if (ctValue === undefined) {
    // No Content-Type: guess from the file name, else octet-stream for an attachment (RFC 2183).
    const fname = disp.params.get('filename');
    const ext = fname ? extensionOf(fname) : '';
    if (ext) ctValue = libmime().detectMimeType(ext) || undefined;
    ctValue ??= /^attachment$/i.test(disp.value) ? 'application/octet-stream' : 'text/plain';
  }
  const type = parseHeaderValue(ctValue);
  const boundary = type.params.get('boundary');
  return {
    contentType: type.value.toLowerCase().trim(),
    charset: type.params.get('charset') || '',
    disposition: decodeWords(disp.value.toLowerCase().trim()),
    filename: decodeWords(disp.params.get('filename') || type.params.get('name') || ''),
    encoding: (cte ?? '')
      .replace(/\(.*\)/g, '')
      .toLowerCase()
      .trim(),
    // Boundary parameters arrive as latin1 text and are matched as their UTF-8 bytes (as before).
    boundary: boundary ? Buffer.from(boundary) : undefined,
    contentTypeField: ct ?? '',
  };
}
