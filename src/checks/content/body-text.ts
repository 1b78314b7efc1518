// The body facts rules match with regexes: decoded text and HTML of the message, read from at most
// `body_scan_bytes` of the message and cut to `body_max_bytes`, so a 50 MB attachment costs
// nothing. Only computed when some rule reads them (the check asks the policy).
import type { MailParser as MailParserType } from 'mailparser';

// mailparser (~17 MiB resident) is loaded on first use: only when a rule reads the body text.
let MailParserCtor: typeof MailParserType | undefined;
async function mailParser(): Promise<typeof MailParserType> {
  MailParserCtor ??= (await import('mailparser')).MailParser;
  return MailParserCtor;
}
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';

export const bodyFacts: readonly FactSpec[] = [
  {
    name: 'message.body_text',
    stage: 'data',
    type: 'string',
    description: 'Body text: the text/plain parts decoded (or, without one, the HTML parts as text), cut to settings.body_max_bytes',
  },
  { name: 'message.body_html', stage: 'data', type: 'string', description: 'The text/html parts decoded, cut to settings.body_max_bytes ("" when none)' },
  {
    name: 'message.body_truncated',
    stage: 'data',
    type: 'boolean',
    description: 'The body facts do not cover the whole message (longer than body_scan_bytes or body_max_bytes)',
  },
];

export interface BodyLimits {
  /** Most characters kept in each of text and HTML. */
  maxBytes: number;
  /** Most bytes of the message read. */
  scanBytes: number;
}

export interface BodyText {
  text: string;
  html: string;
  truncated: boolean;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** A plain-text rendering of HTML good enough for matching: tags out, entities decoded. */
export function htmlToText(html: string): string {
  return html
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<br\s*\/?>|<\/(p|div|li|tr|h[1-6])\s*>/gi, '\n')
    .replace(/<[^>]*>/g, '')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === '#') {
        const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return Number.isFinite(n) && n > 0 && n < 0x110000 ? String.fromCodePoint(n) : m;
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .replace(/[ \t]+/g, ' ')
    .replace(/\n\s*\n+/g, '\n')
    .trim();
}

/**
 * Reads the text parts of a message. Only the first `scanBytes` bytes are parsed; attachment
 * contents are drained and dropped. A malformed message yields whatever was decoded.
 */
export async function extractBodyText(source: AsyncIterable<Buffer | string>, limits: BodyLimits): Promise<BodyText> {
  const MailParser = await mailParser();
  const parser = new MailParser({ skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true });
  let text = '';
  let html = '';
  let truncated = false;
  parser.on('data', (d: { type: string; text?: string; html?: string | false; content?: NodeJS.ReadableStream; release?: () => void }) => {
    if (d.type === 'attachment') {
      d.content?.on('data', () => undefined);
      d.content?.on('end', () => d.release?.());
      d.content?.resume();
    } else if (d.type === 'text') {
      text = d.text ?? '';
      html = typeof d.html === 'string' ? d.html : '';
    }
  });
  let failed = false;
  const done = new Promise<void>((resolve) => {
    parser.on('end', () => resolve());
    parser.on('error', () => {
      // e.g. mailsplit's "Max allowed child nodes exceeded" (a MIME bomb): the parser is dead and
      // will never emit 'drain' again, so the loop below must not wait for it.
      failed = true;
      truncated = true;
      resolve();
    });
  });
  let read = 0;
  try {
    for await (const chunk of source) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const room = limits.scanBytes - read;
      const part = buf.length > room ? buf.subarray(0, room) : buf;
      read += part.length;
      if (!parser.write(part)) await Promise.race([new Promise((r) => parser.once('drain', r)), done]);
      if (failed) break;
      if (read >= limits.scanBytes) {
        truncated = true;
        break;
      }
    }
  } catch {
    truncated = true;
  }
  if (!failed) parser.end();
  await done;
  if (!text && html) text = htmlToText(html);
  if (text.length > limits.maxBytes) {
    text = text.slice(0, limits.maxBytes);
    truncated = true;
  }
  if (html.length > limits.maxBytes) {
    html = html.slice(0, limits.maxBytes);
    truncated = true;
  }
  return { text, html, truncated };
}

export interface BodyTextCheckOptions {
  /** Fixed limits (tests); default: the rules' `settings:` section. */
  limits?: BodyLimits;
  /** Compute the facts even when no rule reads them (tests, `rules test`). */
  always?: boolean;
}

/**
 * The body-text check. It is RulesAware: it takes its limits from `settings:` and runs only when
 * some rule in force reads a body fact.
 */
export function createBodyTextCheck(opts: BodyTextCheckOptions = {}): Check & RulesAware {
  let limits: BodyLimits = opts.limits ?? { maxBytes: 262_144, scanBytes: 4_194_304 };
  let wanted = opts.always ?? false;
  return {
    name: 'body-text',
    effects: 'none',
    onRulesLoaded(loaded) {
      if (!opts.limits) limits = { maxBytes: loaded.settings.body_max_bytes, scanBytes: loaded.settings.body_scan_bytes };
      wanted = opts.always || bodyFacts.some((f) => loaded.policy.readsFact(f.name));
    },
    stages: ['data'],
    facts: bodyFacts,
    timeoutMs: 10_000,
    // Matching the body is scoring, not a safety property: a parse failure must not block mail.
    onFailure: 'continue',
    async run(input, out) {
      if (!input.message) return;
      if (!wanted) return;
      const body = await extractBodyText(input.message.stream() as AsyncIterable<Buffer>, limits);
      out.facts.set('message.body_text', body.text);
      out.facts.set('message.body_html', body.html);
      out.facts.set('message.body_truncated', body.truncated);
    },
  };
}
