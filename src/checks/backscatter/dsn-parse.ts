// A bounded parser for bounces and auto-replies: tells what kind of DSN a message is (RFC 3464
// report, Exchange NDR, Postfix, qmail, RFC 3834 auto-reply, challenge-response) and extracts the
// returned original's Message-ID, From, DKIM d= and Received headers. Loops and indexOf only.
import { Readable } from 'node:stream';

/** Bytes of a message looked at; a DSN carries its human part and the returned headers first. */
export const DSN_MAX_INPUT = 512 * 1024;
const MAX_FIELDS = 300;
const MAX_FIELD_BYTES = 8 * 1024;
const MAX_PARTS = 64;
const MAX_DEPTH = 4;
const MAX_RECEIVED = 20;
const MAX_RECEIVED_BYTES = 512;
const MAX_DKIM = 10;
/** RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
const MAX_BOUNDARY = 70;

export type DsnKind = 'none' | 'rfc3464' | 'exchange' | 'postfix' | 'qmail' | 'mailer-daemon' | 'auto-reply' | 'challenge';
export const DSN_KINDS: readonly DsnKind[] = ['none', 'rfc3464', 'exchange', 'postfix', 'qmail', 'mailer-daemon', 'auto-reply', 'challenge'];
/** The kinds that are delivery reports (bounces), as opposed to auto-replies and challenges. */
export const BOUNCE_KINDS: readonly DsnKind[] = ['rfc3464', 'exchange', 'postfix', 'qmail', 'mailer-daemon'];

export interface ReturnedOriginal {
  /** Where the original's headers came from. */
  source: 'message/rfc822' | 'rfc822-headers' | 'qmail' | 'in-reply-to' | 'scan';
  /** Message-ID without the angle brackets ("" when absent). */
  messageId: string;
  /** The address in the original's From ("" when absent or unparseable). */
  from: string;
  /** d= of each DKIM-Signature of the original, lower-cased. */
  dkimDomains: string[];
  /** Received fields of the original, top first, each cut at 512 characters. */
  received: string[];
}

export interface DsnInfo {
  kind: DsnKind;
  /** A delivery report (not an auto-reply or challenge). */
  isBounce: boolean;
  original?: ReturnedOriginal;
  /** From the first per-recipient block of a message/delivery-status part (RFC 3464 2.3). */
  action?: string;
  status?: string;
  /** Input was cut at DSN_MAX_INPUT, or a structural limit was hit. */
  truncated: boolean;
}

interface Field {
  /** Lower-cased name. */
  name: string;
  value: string;
}

interface Block {
  fields: Field[];
  /** Index just after the empty line ending the block (or `end` when there is none). */
  bodyStart: number;
}

/** Reads at most `max` bytes of a stream, then stops (destroys) it. */
export async function readCapped(stream: NodeJS.ReadableStream, max = DSN_MAX_INPUT): Promise<{ bytes: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const r = stream instanceof Readable ? stream : Readable.from(stream as AsyncIterable<Buffer>);
  for await (const c of r) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c), 'latin1');
    if (size + b.length >= max) {
      chunks.push(b.subarray(0, max - size));
      size = max;
      truncated = true;
      break;
    }
    chunks.push(b);
    size += b.length;
  }
  if (truncated) r.destroy();
  return { bytes: Buffer.concat(chunks, size), truncated };
}

/** Parses a header block starting at `start`: unfolded fields (capped), and where the body starts. */
function parseBlock(text: string, start: number, end: number): Block {
  const fields: Field[] = [];
  let pos = start;
  let current: Field | undefined;
  while (pos < end) {
    let nl = text.indexOf('\n', pos);
    if (nl === -1 || nl >= end) nl = end;
    let lineEnd = nl;
    if (lineEnd > pos && text.charCodeAt(lineEnd - 1) === 13) lineEnd--;
    const next = nl + 1;
    if (lineEnd === pos) return { fields, bodyStart: Math.min(next, end) };
    const c = text.charCodeAt(pos);
    if (c === 32 || c === 9) {
      if (current && current.value.length < MAX_FIELD_BYTES) current.value += ' ' + text.slice(pos, Math.min(lineEnd, pos + MAX_FIELD_BYTES)).trim();
    } else {
      const colon = text.indexOf(':', pos);
      if (colon === -1 || colon > lineEnd || colon - pos > 76) {
        // Not a header line: the block ended without an empty line (a cut or sloppy report).
        return { fields, bodyStart: pos };
      }
      if (fields.length < MAX_FIELDS) {
        current = { name: text.slice(pos, colon).trim().toLowerCase(), value: text.slice(colon + 1, Math.min(lineEnd, colon + 1 + MAX_FIELD_BYTES)).trim() };
        fields.push(current);
      } else current = undefined;
    }
    pos = next;
  }
  return { fields, bodyStart: end };
}

/** The first `name` field (case-insensitive) of a header block, unfolded; undefined if absent. */
export function headerValue(headerBlock: string, name: string): string | undefined {
  return get(parseBlock(headerBlock, 0, Math.min(headerBlock.length, DSN_MAX_INPUT)).fields, name.toLowerCase());
}

function get(fields: readonly Field[], name: string): string | undefined {
  for (const f of fields) if (f.name === name) return f.value;
  return undefined;
}

/** `type/subtype; a=b; c="d"` → media type (lower-case) and parameters (names lower-case). */
export function parseContentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (!value) return { type: 'text/plain', params };
  const v = value.length > MAX_FIELD_BYTES ? value.slice(0, MAX_FIELD_BYTES) : value;
  const semi = v.indexOf(';');
  const type = (semi === -1 ? v : v.slice(0, semi)).trim().toLowerCase();
  let i = semi === -1 ? v.length : semi + 1;
  while (i < v.length && params.size < 32) {
    const eq = v.indexOf('=', i);
    if (eq === -1) break;
    const name = v.slice(i, eq).trim().toLowerCase();
    let j = eq + 1;
    while (j < v.length && (v[j] === ' ' || v[j] === '\t')) j++;
    let val = '';
    if (v[j] === '"') {
      j++;
      while (j < v.length && v[j] !== '"') {
        if (v[j] === '\\' && j + 1 < v.length) j++;
        val += v[j];
        j++;
      }
      const close = v.indexOf(';', j);
      i = close === -1 ? v.length : close + 1;
    } else {
      const close = v.indexOf(';', j);
      val = v.slice(j, close === -1 ? v.length : close).trim();
      i = close === -1 ? v.length : close + 1;
    }
    if (name) params.set(name, val);
  }
  return { type, params };
}

/** The first <...> content, or the value trimmed. */
function angleContent(v: string): string {
  const lt = v.indexOf('<');
  const gt = lt === -1 ? -1 : v.indexOf('>', lt + 1);
  return (lt !== -1 && gt !== -1 ? v.slice(lt + 1, gt) : v).trim();
}

/** The address in a From value: the last <...>, else the first whitespace-free token with an @. */
export function fromAddress(v: string): string {
  const lt = v.lastIndexOf('<');
  if (lt !== -1) {
    const gt = v.indexOf('>', lt + 1);
    if (gt !== -1)
      return v
        .slice(lt + 1, gt)
        .trim()
        .toLowerCase();
  }
  let start = 0;
  for (let i = 0; i <= v.length; i++) {
    const c = i < v.length ? v.charCodeAt(i) : 32;
    if (c === 32 || c === 9 || c === 44 || c === 40 || c === 41) {
      const tok = v.slice(start, i);
      if (tok.includes('@')) return tok.toLowerCase();
      start = i + 1;
    }
  }
  return '';
}

/** The d= tag of a DKIM-Signature value (RFC 6376 3.2 tag-list), lower-cased. */
export function dkimDomain(v: string): string | undefined {
  let i = 0;
  while (i < v.length) {
    const semi = v.indexOf(';', i);
    const end = semi === -1 ? v.length : semi;
    const eq = v.indexOf('=', i);
    if (eq !== -1 && eq < end && v.slice(i, eq).trim().toLowerCase() === 'd') {
      const d = v
        .slice(eq + 1, end)
        .trim()
        .toLowerCase();
      return d.length > 0 && d.length <= 253 ? d : undefined;
    }
    i = end + 1;
  }
  return undefined;
}

function originalFrom(fields: readonly Field[], source: ReturnedOriginal['source']): ReturnedOriginal {
  const dkimDomains: string[] = [];
  const received: string[] = [];
  for (const f of fields) {
    if (f.name === 'dkim-signature' && dkimDomains.length < MAX_DKIM) {
      const d = dkimDomain(f.value);
      if (d && !dkimDomains.includes(d)) dkimDomains.push(d);
    } else if (f.name === 'received' && received.length < MAX_RECEIVED) received.push(f.value.slice(0, MAX_RECEIVED_BYTES));
  }
  const mid = get(fields, 'message-id');
  const from = get(fields, 'from');
  return { source, messageId: mid ? angleContent(mid) : '', from: from ? fromAddress(from) : '', dkimDomains, received };
}

/** Lower-case ASCII search without building a lower-cased copy of the whole text. */
function hasPhrase(text: string, start: number, end: number, phraseLower: string): boolean {
  // Case-insensitive: compare against the lower-cased window; windows are capped by the caller.
  return text.slice(start, end).toLowerCase().includes(phraseLower);
}

interface Walk {
  text: string;
  parts: number;
  maxParts: number;
  maxDepth: number;
  truncated: boolean;
  original?: ReturnedOriginal;
  action?: string;
  status?: string;
  report: boolean;
  postfixText: boolean;
}

const ORIGINAL_TYPES = new Map<string, ReturnedOriginal['source']>([
  ['message/rfc822', 'message/rfc822'],
  ['message/global', 'message/rfc822'],
  ['text/rfc822-headers', 'rfc822-headers'],
  ['message/rfc822-headers', 'rfc822-headers'],
  ['message/global-headers', 'rfc822-headers'],
]);

/** Walks one MIME entity (headers at `start`) up to `end`, recursing into multiparts. */
function walk(w: Walk, start: number, end: number, depth: number, fields: readonly Field[], bodyStart: number): void {
  const ct = parseContentType(get(fields, 'content-type'));
  if (ct.type === 'multipart/report' && (ct.params.get('report-type') ?? '').toLowerCase() === 'delivery-status') w.report = true;
  const source = ORIGINAL_TYPES.get(ct.type);
  if (source) {
    if (!w.original) w.original = originalFrom(parseBlock(w.text, bodyStart, end).fields, source);
    return;
  }
  if (ct.type === 'message/delivery-status' || ct.type === 'message/global-delivery-status') {
    // RFC 3464 2.1: a per-message block, then per-recipient blocks, separated by empty lines.
    const perMessage = parseBlock(w.text, bodyStart, end);
    const perRcpt = parseBlock(w.text, perMessage.bodyStart, end).fields;
    const action = get(perRcpt, 'action');
    const status = get(perRcpt, 'status');
    if (action !== undefined) w.action = action.toLowerCase().slice(0, 32);
    if (status !== undefined) w.status = status.slice(0, 32);
    return;
  }
  if (ct.type.startsWith('text/') && !w.postfixText) {
    w.postfixText = hasPhrase(w.text, bodyStart, Math.min(end, bodyStart + 4096), 'this is the mail system at host');
  }
  if (!ct.type.startsWith('multipart/')) return;
  const boundary = ct.params.get('boundary');
  if (!boundary || boundary.length > MAX_BOUNDARY) return;
  if (depth >= w.maxDepth) {
    w.truncated = true;
    return;
  }
  const delim = '\n--' + boundary;
  // The body starts after an empty line, so the first delimiter is found from the "\n" before it.
  let pos = w.text.indexOf(delim, Math.max(start, bodyStart - 1));
  while (pos !== -1 && pos < end) {
    const after = pos + delim.length;
    if (w.text.startsWith('--', after)) return;
    const lineEnd = w.text.indexOf('\n', after);
    if (lineEnd === -1 || lineEnd >= end) return;
    let next = w.text.indexOf(delim, lineEnd);
    if (next === -1 || next > end) next = end;
    if (++w.parts > w.maxParts) {
      w.truncated = true;
      return;
    }
    const partStart = lineEnd + 1;
    const part = parseBlock(w.text, partStart, next);
    walk(w, partStart, next, depth + 1, part.fields, part.bodyStart);
    if (next >= end) return;
    pos = next;
  }
}

const CHALLENGE_SUBJECTS = [
  'please confirm your message',
  'please confirm your e-mail',
  'please confirm your email',
  'your message requires confirmation',
  'verify your email',
  'authorization required',
  'confirm that you are a human',
  '[boxbe]',
];

function isAutoReply(fields: readonly Field[]): boolean {
  // RFC 3834 5: any Auto-Submitted value except "no" marks automatic mail.
  const as = get(fields, 'auto-submitted');
  if (
    as !== undefined &&
    as
      .trim()
      .toLowerCase()
      .split(/[\s;(]/, 1)[0] !== 'no'
  )
    return true;
  const prec = (get(fields, 'precedence') ?? '').trim().toLowerCase();
  if (prec === 'auto_reply') return true;
  return get(fields, 'x-autoreply') !== undefined || get(fields, 'x-autorespond') !== undefined;
}

function isChallenge(fields: readonly Field[]): boolean {
  for (const f of fields) {
    if (f.name.startsWith('x-tmda') || f.name.startsWith('x-boxbe') || f.name === 'x-challenge' || f.name === 'x-spamarrest-noauth') return true;
    if (f.name === 'x-delivery-agent' && f.value.toLowerCase().startsWith('tmda')) return true;
  }
  const subject = (get(fields, 'subject') ?? '').slice(0, 200).toLowerCase();
  return CHALLENGE_SUBJECTS.some((s) => subject.includes(s));
}

const DAEMON_LOCALS = ['mailer-daemon', 'mailerdaemon', 'mail-daemon', 'postmaster'];
const DAEMON_SUBJECTS = [
  'undeliver',
  'delivery status notification',
  'delivery failure',
  'failure notice',
  'returned mail',
  'mail delivery failed',
  'mail failure',
  'returning message to sender',
  'delivery notification',
  'nondeliverable',
];

/** A non-MIME bounce: From a mailer daemon (or postmaster) with a bounce-like Subject. */
function isDaemonBounce(fields: readonly Field[], subjectLower: string): boolean {
  const from = fromAddress((get(fields, 'from') ?? '').slice(0, 512));
  const local = from.slice(0, from.indexOf('@') === -1 ? from.length : from.indexOf('@'));
  return DAEMON_LOCALS.includes(local) && DAEMON_SUBJECTS.some((s) => subjectLower.includes(s));
}

const EXCHANGE_SUBJECTS = ['undeliverable:', 'unzustellbar:', 'non remis :', 'non remis:', 'onbestelbaar:', 'no se puede entregar:'];

/** Structural limits a caller may tighten (the MIME walk's, from content.mime): never loosened past the parser's own. */
export interface DsnLimits {
  maxParts?: number;
  maxDepth?: number;
}

/** Recognises a bounce or auto-reply in the raw message (or its first DSN_MAX_INPUT bytes). */
export function parseDsn(raw: Buffer | string, truncatedInput = false, limits: DsnLimits = {}): DsnInfo {
  const text = typeof raw === 'string' ? raw.slice(0, DSN_MAX_INPUT) : raw.subarray(0, DSN_MAX_INPUT).toString('latin1');
  const truncated = truncatedInput || (typeof raw === 'string' ? raw.length : raw.length) > DSN_MAX_INPUT;
  const top = parseBlock(text, 0, text.length);
  const w: Walk = {
    text,
    parts: 0,
    maxParts: Math.min(MAX_PARTS, limits.maxParts ?? MAX_PARTS),
    maxDepth: Math.min(MAX_DEPTH, limits.maxDepth ?? MAX_DEPTH),
    truncated,
    report: false,
    postfixText: false,
  };
  walk(w, 0, text.length, 0, top.fields, top.bodyStart);

  const subject = (get(top.fields, 'subject') ?? '').slice(0, 200).toLowerCase().trimStart();
  const exchange = get(top.fields, 'x-ms-exchange-message-is-ndr') !== undefined || EXCHANGE_SUBJECTS.some((s) => subject.startsWith(s));
  const bodyHead = Math.min(text.length, top.bodyStart + 4096);
  const qmail = hasPhrase(text, top.bodyStart, bodyHead, 'this is the qmail-send program at');
  if (!w.postfixText) w.postfixText = hasPhrase(text, top.bodyStart, bodyHead, 'this is the mail system at host');

  let kind: DsnKind = 'none';
  if (exchange) kind = 'exchange';
  else if (w.postfixText) kind = 'postfix';
  else if (qmail) kind = 'qmail';
  else if (w.report) kind = 'rfc3464';
  else if (isDaemonBounce(top.fields, subject)) kind = 'mailer-daemon';
  else if (isChallenge(top.fields)) kind = 'challenge';
  else if (isAutoReply(top.fields)) kind = 'auto-reply';

  if (!w.original && qmail) {
    // qmail-send: the original follows "--- Below this line is a copy of the message." and a blank line.
    const marker = text
      .slice(top.bodyStart, Math.min(text.length, top.bodyStart + 65_536))
      .toLowerCase()
      .indexOf('--- below this line is a copy of the message.');
    if (marker !== -1) {
      const nl = text.indexOf('\n', top.bodyStart + marker);
      if (nl !== -1) {
        let s = nl + 1;
        while (s < text.length && (text[s] === '\n' || text[s] === '\r')) s++;
        w.original = originalFrom(parseBlock(text, s, text.length).fields, 'qmail');
      }
    }
  }
  if (!w.original && kind !== 'none' && kind !== 'auto-reply' && kind !== 'challenge') {
    // Non-MIME bounces quote the original's headers somewhere in the body: find a line that starts
    // a header block we care about and parse from there.
    const s = findHeaderLine(text, top.bodyStart);
    if (s !== -1) w.original = originalFrom(parseBlock(text, s, text.length).fields, 'scan');
  }
  if (!w.original && (kind === 'auto-reply' || kind === 'challenge')) {
    // RFC 3834 3.1.5: an auto-reply's In-Reply-To names the message it answers.
    const irt = get(top.fields, 'in-reply-to') ?? get(top.fields, 'references');
    if (irt) w.original = { source: 'in-reply-to', messageId: angleContent(irt), from: '', dkimDomains: [], received: [] };
  }
  const info: DsnInfo = { kind, isBounce: BOUNCE_KINDS.includes(kind), truncated: w.truncated };
  if (w.original) info.original = w.original;
  if (w.action !== undefined) info.action = w.action;
  if (w.status !== undefined) info.status = w.status;
  return info;
}

const SCAN_STARTS = ['received:', 'message-id:', 'return-path:', 'dkim-signature:'];

/** Index of the first body line starting with one of SCAN_STARTS (case-insensitive), or -1. */
function findHeaderLine(text: string, from: number): number {
  let pos = from;
  let lines = 0;
  while (pos < text.length && lines < 5000) {
    const head = text.slice(pos, pos + 16).toLowerCase();
    if (SCAN_STARTS.some((s) => head.startsWith(s))) return pos;
    const nl = text.indexOf('\n', pos);
    if (nl === -1) return -1;
    pos = nl + 1;
    lines++;
  }
  return -1;
}
