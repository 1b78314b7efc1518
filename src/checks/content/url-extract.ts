// URLs in the text and HTML of a message, found with loops over the walk's (capped) text — no
// regex over bodies: every "://" and "www." is a candidate, cut at the first terminator, at most
// 2048 characters, at most `max` URLs. Hosts come from WHATWG URL parsing (IDN → punycode).

const SCHEMES = new Set(['http', 'https', 'ftp', 'hxxp', 'hxxps']);
const MAX_URL = 2048;

function isTerminator(c: number): boolean {
  // Whitespace, controls, quotes, angle brackets and the characters that end URLs in prose/HTML.
  return (
    c <= 0x20 ||
    c === 0x22 ||
    c === 0x27 ||
    c === 0x3c ||
    c === 0x3e ||
    c === 0x60 ||
    c === 0x7f ||
    c === 0x5c ||
    c === 0x7b ||
    c === 0x7d ||
    c === 0x7c ||
    c === 0x5e
  );
}

function isSchemeChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
}

const ENTITIES: Record<string, string> = { amp: '&', quot: '"', apos: "'", lt: '<', gt: '>', '#38': '&', '#x26': '&', '#61': '=', '#x3d': '=' };

/** The &amp; and friends HTML attributes carry inside URLs. */
function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  let out = '';
  let i = 0;
  while (i < s.length) {
    const amp = s.indexOf('&', i);
    if (amp < 0) break;
    const semi = s.indexOf(';', amp);
    out += s.slice(i, amp);
    const name = semi > amp && semi - amp <= 6 ? s.slice(amp + 1, semi).toLowerCase() : '';
    const rep = name ? ENTITIES[name] : undefined;
    if (rep !== undefined) {
      out += rep;
      i = semi + 1;
    } else {
      out += '&';
      i = amp + 1;
    }
  }
  return out + s.slice(i);
}

function trimTail(u: string): string {
  // Prose punctuation after a URL ("see http://x.example/a.") is not part of it.
  let end = u.length;
  while (end > 0 && '.,;:!?)]'.includes(u[end - 1] ?? '')) {
    if (u[end - 1] === ')') {
      // Keep a closing parenthesis that balances one in the URL (Wikipedia-style paths).
      let open = 0;
      for (let k = 0; k < end; k++) open += u[k] === '(' ? 1 : u[k] === ')' ? -1 : 0;
      if (open >= 0) break;
    }
    end--;
  }
  return u.slice(0, end);
}

export interface FoundUrl {
  url: string;
  host: string;
}

export function hostOf(url: string): string {
  try {
    const fixed = url.startsWith('hxxp') ? `http${url.slice(4)}` : url.startsWith('www.') ? `http://${url}` : url;
    const h = new URL(fixed).hostname.toLowerCase();
    return h.endsWith('.') ? h.slice(0, -1) : h;
  } catch {
    return '';
  }
}

/** Finds URLs in `text` (text or HTML), adding new ones to `into` until it holds `max`. */
export function extractUrls(text: string, into: Map<string, FoundUrl>, max: number): boolean {
  let truncated = false;
  const add = (raw: string) => {
    const url = trimTail(decodeEntities(raw)).slice(0, MAX_URL);
    if (url.length < 8 || into.has(url)) return;
    const host = hostOf(url);
    if (!host) return;
    if (into.size >= max) {
      truncated = true;
      return;
    }
    into.set(url, { url, host });
  };
  let i = text.indexOf('://');
  while (i >= 0 && !truncated) {
    let s = i;
    while (s > 0 && i - s < 10 && isSchemeChar(text.charCodeAt(s - 1))) s--;
    const scheme = text.slice(s, i).toLowerCase();
    let e = i + 3;
    while (e < text.length && e - s < MAX_URL && !isTerminator(text.charCodeAt(e))) e++;
    if (SCHEMES.has(scheme)) add(text.slice(s, e).replace(/^[A-Z]+/, (m) => m.toLowerCase()));
    i = text.indexOf('://', Math.max(e, i + 3));
  }
  // Scheme-less "www." links, which clients make clickable.
  let w = text.indexOf('www.');
  while (w >= 0 && !truncated) {
    const before = w > 0 ? text.charCodeAt(w - 1) : 0x20;
    let e = w;
    while (e < text.length && e - w < MAX_URL && !isTerminator(text.charCodeAt(e))) e++;
    if (before !== 0x2f && before !== 0x2e && !isSchemeChar(before)) add(text.slice(w, e));
    w = text.indexOf('www.', Math.max(e, w + 4));
  }
  return truncated;
}
