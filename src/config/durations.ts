// Durations (`90s`, `5m`, `35d`) and rates (`100/1m`, `10/s`) as written in mailgate.yaml and the
// rules files, with their zod schemas: one syntax for every key that takes a time or a rate.
import { z } from 'zod';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `250ms`, `30s`, `5m`, `2h`, `35d`, `1w`; a bare number is seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(text);
  if (!m) return undefined;
  const ms = Number(m[1]) * (UNIT_MS[m[2] ?? 's'] ?? 1000);
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : undefined;
}

/** A duration in a rules file: a string like `5m`, or a number of seconds. */
export const durationSchema = z.union([z.string(), z.number().positive()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? Math.round(v * 1000) : parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like 30s, 5m, 2h, 35d (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return ms;
});

/** `100/1m`, `100/m`, `5/10s`, `1000/1d`: count per period. */
export function parseRate(text: string): { count: number; periodMs: number } | undefined {
  const m = /^\s*(\d+)\s*\/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h|d|w)\s*$/.exec(text);
  if (!m) return undefined;
  const count = Number(m[1]);
  const periodMs = Math.round(Number(m[2] ?? '1') * (UNIT_MS[m[3] ?? 's'] ?? 1000));
  if (!(count >= 1) || !(periodMs >= 1)) return undefined;
  return { count, periodMs };
}

export const rateSchema = z.string().transform((v, ctx) => {
  const r = parseRate(v);
  if (!r) {
    ctx.addIssue({ code: 'custom', message: `expected a rate like 100/1m, 10/s or 1000/1d (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return r;
});
