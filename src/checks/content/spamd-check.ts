// The `spamassassin` check: the spamd protocol (SpamAssassin's spamd/PROTOCOL, "SYMBOLS
// SPAMC/1.5" with Content-length), over TCP or a Unix socket, answer parsed into
// spamassassin.* facts. Messages over max_bytes are not sent (spamc's own default is 500 KB).
import net from 'node:net';
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { SpamassassinConfig } from '../../config/content-schema.ts';
import { contentMetrics } from './content-metrics.ts';
import { headerSafe } from './http-post.ts';

export const spamassassinFacts: readonly FactSpec[] = [
  { name: 'spamassassin.score', stage: 'data', type: 'number', description: 'SpamAssassin score of the message' },
  { name: 'spamassassin.required', stage: 'data', type: 'number', description: 'SpamAssassin required_score (its spam threshold)' },
  { name: 'spamassassin.spam', stage: 'data', type: 'boolean', description: 'SpamAssassin says spam (score >= required)' },
  { name: 'spamassassin.symbols', stage: 'data', type: 'string[]', description: 'Names of the SpamAssassin rules that hit' },
  { name: 'spamassassin.skipped', stage: 'data', type: 'boolean', description: 'Not sent: larger than spamassassin.max_bytes' },
];

export interface SpamdAnswer {
  spam: boolean;
  score: number;
  required: number;
  symbols: string[];
}

/** Parses "SPAMD/1.1 0 EX_OK" + headers + body (the SYMBOLS list). Throws on a protocol error. */
export function parseSpamdAnswer(text: string): SpamdAnswer {
  const headEnd = text.indexOf('\r\n\r\n');
  const head = headEnd >= 0 ? text.slice(0, headEnd) : text;
  const body = headEnd >= 0 ? text.slice(headEnd + 4) : '';
  const lines = head.split('\r\n');
  const status = lines[0] ?? '';
  const parts = status.split(' ');
  if (!status.startsWith('SPAMD/') || parts[1] !== '0') throw new Error(`spamd: ${status.slice(0, 200) || 'no answer'}`);
  const spamLine = lines.find((l) => l.toLowerCase().startsWith('spam:'));
  if (!spamLine) throw new Error('spamd: answer without a Spam header');
  // "Spam: True ; 15.3 / 5.0"
  const v = spamLine.slice(5);
  const semi = v.indexOf(';');
  const slash = v.indexOf('/', semi);
  const flag = v.slice(0, semi).trim().toLowerCase();
  const score = Number(v.slice(semi + 1, slash).trim());
  const required = Number(v.slice(slash + 1).trim());
  if (semi < 0 || slash < 0 || !Number.isFinite(score) || !Number.isFinite(required)) throw new Error(`spamd: bad Spam header "${spamLine.slice(0, 100)}"`);
  const symbols = body
    .trim()
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .slice(0, 500);
  return { spam: flag === 'true' || flag === 'yes', score, required, symbols };
}

async function askSpamd(cfg: SpamassassinConfig, msg: { size: number; stream(): NodeJS.ReadableStream }, signal: AbortSignal): Promise<SpamdAnswer> {
  const s = cfg.socket ? net.connect(cfg.socket) : net.connect(cfg.port, cfg.host);
  try {
    return await new Promise<SpamdAnswer>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`spamd did not answer within ${cfg.timeout_ms} ms`));
      }, cfg.timeout_ms);
      const onAbort = () => {
        s.destroy();
        reject(new Error('spamd: aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const finish = (err?: Error) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (err) return reject(err);
        try {
          resolve(parseSpamdAnswer(buf));
        } catch (e) {
          reject(e as Error);
        }
      };
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (buf.length > 65_536) s.destroy(new Error('spamd answer too long'));
      });
      s.once('error', (err) => finish(new Error(`spamd ${cfg.socket ?? `${cfg.host}:${cfg.port}`}: ${err.message}`)));
      s.once('end', () => finish());
      s.once('connect', async () => {
        const head = [`SYMBOLS SPAMC/1.5`, `Content-length: ${msg.size}`, ...(cfg.user ? [`User: ${headerSafe(cfg.user)}`] : []), '', ''].join('\r\n');
        s.write(head);
        try {
          for await (const chunk of msg.stream() as AsyncIterable<Buffer>) {
            if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
          }
          // Half-close: spamd answers after Content-length bytes; some builds want EOF too.
          s.end();
        } catch (err) {
          s.destroy(err as Error);
        }
      });
    });
  } finally {
    s.destroy();
  }
}

export function createSpamassassinCheck(cfg: SpamassassinConfig): Check {
  return {
    name: 'spamassassin',
    effects: 'network',
    stages: ['data'],
    facts: spamassassinFacts,
    timeoutMs: cfg.timeout_ms + 1000,
    onFailure: cfg.on_failure,
    async run(input, out) {
      const msg = input.message;
      if (!msg) return;
      if (msg.size > cfg.max_bytes) {
        contentMetrics.scannerCalls.inc({ scanner: 'spamassassin', result: 'skipped' });
        out.facts.set('spamassassin.skipped', true);
        return;
      }
      let a: SpamdAnswer;
      try {
        a = await askSpamd(cfg, msg, input.signal);
      } catch (err) {
        contentMetrics.scannerCalls.inc({ scanner: 'spamassassin', result: 'error' });
        throw err;
      }
      contentMetrics.scannerCalls.inc({ scanner: 'spamassassin', result: 'ok' });
      out.facts.set('spamassassin.score', a.score);
      out.facts.set('spamassassin.required', a.required);
      out.facts.set('spamassassin.spam', a.spam);
      out.facts.set('spamassassin.symbols', a.symbols);
      out.facts.set('spamassassin.skipped', false);
    },
  };
}
