// A safe view of a stored message for the console and API: header fields as text, the body as
// plain text only (HTML is converted to text by mailparser, never passed on as markup), and the
// attachments' names and sizes. Bounded: huge messages are cut before parsing.
// mailparser (and html-to-text, htmlparser2, … ≈ 60 modules) is imported on the first view, not
// when the admin server starts: most gateways never open a message in the console.
import type { simpleParser as SimpleParser } from 'mailparser';

let parser: typeof SimpleParser | undefined;

export interface MessageView {
  headers: Array<{ name: string; value: string }>;
  subject: string;
  text: string;
  textTruncated: boolean;
  /** The message had an HTML part (shown only as text). */
  hadHtml: boolean;
  attachments: Array<{ filename: string; contentType: string; size: number }>;
}

/** Views parse at most this much of a message (read with store.head()). */
export const MAX_PARSE = 10 * 1024 * 1024;
const MAX_TEXT = 200_000;
const MAX_HEADER = 256 * 1024;
const MAX_FIELDS = 500;

/** The header block split into fields, folded lines joined (RFC 5322 §2.2.3), with loops only. */
export function headerFields(bytes: Buffer): Array<{ name: string; value: string }> {
  let end = bytes.indexOf('\r\n\r\n');
  if (end < 0) end = Math.min(bytes.length, MAX_HEADER);
  const text = bytes.subarray(0, Math.min(end, MAX_HEADER)).toString('latin1');
  const out: Array<{ name: string; value: string }> = [];
  for (const line of text.split('\r\n')) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && out.length) {
      const last = out[out.length - 1] as { name: string; value: string };
      last.value += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (out.length >= MAX_FIELDS) break;
    out.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim() });
  }
  return out;
}

const BLOCK = new Set(['p', 'div', 'br', 'tr', 'li', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'table', 'blockquote', 'hr', 'pre']);
const DROP = new Set(['script', 'style', 'head', 'title', 'noscript', 'template', 'svg', 'object', 'iframe']);
const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/**
 * HTML → plain text for display when a message has no text part (mailparser leaves `text` empty
 * for an HTML-only multipart/alternative). One pass over the input, no regex, no DOM: tags are
 * dropped, block tags become line breaks, script/style contents are skipped, entities decoded.
 */
export function htmlToPlain(htmlText: string, max = MAX_TEXT): string {
  let out = '';
  let i = 0;
  const n = htmlText.length;
  let skipUntil: string | undefined;
  while (i < n && out.length < max) {
    const c = htmlText[i] as string;
    if (c === '<') {
      const close = htmlText.indexOf('>', i + 1);
      if (close < 0) break;
      const inner = htmlText
        .slice(i + 1, Math.min(close, i + 200))
        .trim()
        .toLowerCase();
      const endTag = inner.startsWith('/');
      let j = endTag ? 1 : 0;
      let name = '';
      while (j < inner.length) {
        const ch = inner[j] as string;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) break;
        name += ch;
        j++;
      }
      i = close + 1;
      if (skipUntil) {
        if (endTag && name === skipUntil) skipUntil = undefined;
        continue;
      }
      if (!endTag && DROP.has(name) && !inner.endsWith('/')) skipUntil = name;
      else if (BLOCK.has(name) && !out.endsWith('\n')) out += '\n';
      continue;
    }
    i++;
    if (skipUntil) continue;
    if (c === '&') {
      const semi = htmlText.indexOf(';', i);
      if (semi > i && semi - i <= 8) {
        const ent = htmlText.slice(i, semi).toLowerCase();
        let rep = ENTITIES[ent];
        if (rep === undefined && ent.startsWith('#')) {
          const code = ent.startsWith('#x') ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10);
          if (Number.isInteger(code) && code > 0 && code <= 0x10ffff) rep = String.fromCodePoint(code);
        }
        if (rep !== undefined) {
          out += rep;
          i = semi + 1;
          continue;
        }
      }
    }
    out += c === '\r' ? '' : c === '\t' ? ' ' : c;
  }
  return out.trim();
}

/** `bytes` may be a prefix of the message (`size` is the whole message's length). */
export async function viewMessage(bytes: Buffer, size = bytes.length): Promise<MessageView> {
  parser ??= (await import('mailparser')).simpleParser;
  const parsed = await parser(bytes.length > MAX_PARSE ? bytes.subarray(0, MAX_PARSE) : bytes, {
    skipHtmlToText: false,
    skipImageLinks: true,
    skipTextToHtml: true,
    skipTextLinks: true,
  });
  const html = typeof parsed.html === 'string' ? parsed.html : '';
  const text = parsed.text?.trim() ? parsed.text : html ? htmlToPlain(html) : '';
  return {
    headers: headerFields(bytes),
    subject: parsed.subject ?? '',
    text: text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text,
    textTruncated: text.length > MAX_TEXT || size > bytes.length || bytes.length > MAX_PARSE,
    hadHtml: html.length > 0,
    attachments: parsed.attachments.map((a) => ({ filename: a.filename ?? '(unnamed)', contentType: a.contentType, size: a.size })),
  };
}
