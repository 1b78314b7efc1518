// A safe view of a stored message for the console and API: header fields as text, the body as
// plain text only (HTML is converted to text by mailparser, never passed on as markup), and the
// attachments' names and sizes. Bounded: huge messages are cut before parsing.
import { simpleParser } from 'mailparser';

export interface MessageView {
  headers: Array<{ name: string; value: string }>;
  subject: string;
  text: string;
  textTruncated: boolean;
  /** The message had an HTML part (shown only as text). */
  hadHtml: boolean;
  attachments: Array<{ filename: string; contentType: string; size: number }>;
}

const MAX_PARSE = 10 * 1024 * 1024;
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

export async function viewMessage(bytes: Buffer): Promise<MessageView> {
  const parsed = await simpleParser(bytes.length > MAX_PARSE ? bytes.subarray(0, MAX_PARSE) : bytes, {
    skipHtmlToText: false,
    skipImageLinks: true,
    skipTextToHtml: true,
    skipTextLinks: true,
  });
  const text = parsed.text ?? '';
  return {
    headers: headerFields(bytes),
    subject: parsed.subject ?? '',
    text: text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text,
    textTruncated: text.length > MAX_TEXT || bytes.length > MAX_PARSE,
    hadHtml: typeof parsed.html === 'string' && parsed.html.length > 0,
    attachments: parsed.attachments.map((a) => ({ filename: a.filename ?? '(unnamed)', contentType: a.contentType, size: a.size })),
  };
}
