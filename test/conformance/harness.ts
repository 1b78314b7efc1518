// Shared plumbing for the conformance tests: where the suites are (../shared/conformance beside
// the repo), a Buffer-backed MessageView, running a check, and the known-failures bookkeeping.
import { detachedConnection, emptyEdits } from '../../src/pipeline/check.ts';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import pino from 'pino';
import type { Check, CheckOutput, MessageView } from '../../src/pipeline/check.ts';
import { FactSet, type FactValue } from '../../src/pipeline/facts.ts';
import type { Stage } from '../../src/pipeline/stages.ts';
import type { AuthConfig } from '../../src/config/auth-schema.ts';
import { authConfigSchema } from '../../src/config/auth-schema.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const repoRoot = resolve(here, '..', '..');
/** The shared conformance suites: `../shared/conformance` from the repository root. */
export const suitesDir = resolve(repoRoot, '..', 'shared', 'conformance');

export function suitePath(...parts: string[]): string {
  return join(suitesDir, ...parts);
}

/** All documents of a multi-document YAML file; duplicated keys keep the last value (as PyYAML does). */
export function loadYamlDocuments<T>(path: string): T[] {
  const text = readFileSync(path, 'utf8');
  return parseAllDocuments(text, { uniqueKeys: false }).flatMap((d) => {
    if (!('toJS' in d)) return [];
    const v = d.toJS({ maxAliasCount: -1 }) as T | null;
    return v === null ? [] : [v];
  });
}

export function loadYaml<T>(path: string): T {
  return parse(readFileSync(path, 'utf8'), { uniqueKeys: false }) as T;
}

/** Converts bare LF line endings to CRLF (the suites store messages with LF). */
export function toCrlf(text: string | Buffer): Buffer {
  const s = Buffer.isBuffer(text) ? text.toString('latin1') : text;
  return Buffer.from(s.replace(/\r?\n/g, '\r\n'), 'latin1');
}

/** A MessageView over a complete message in memory (CRLF line endings). */
/**
 * The message as a check sees it. With `heldInChunksOf`, it also offers memoryChunks() (the
 * spool's in-memory form): the raw bytes cut into pieces of that size, so a check's
 * memory path can be compared with its stream path on the same case.
 */
export function messageView(raw: Buffer, heldInChunksOf?: number): MessageView {
  const text = raw.toString('latin1');
  let end = text.indexOf('\r\n\r\n');
  const headerLen = end < 0 ? raw.length : end + 4;
  if (end < 0) end = raw.length;
  const headerBytes = raw.subarray(0, headerLen);
  const headers: Array<{ name: string; value: string }> = [];
  for (const field of text.slice(0, end).split(/\r\n(?![ \t])/)) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    headers.push({
      name: field.slice(0, colon).trim(),
      value: Buffer.from(
        field
          .slice(colon + 1)
          .replace(/\r\n([ \t])/g, '$1')
          .trim(),
        'latin1',
      ).toString('utf8'),
    });
  }
  return {
    size: raw.length,
    headerBytes,
    headers,
    stream: () => Readable.from([raw]),
    bodyStream: () => Readable.from([raw.subarray(headerLen)]),
    ...(heldInChunksOf
      ? {
          memoryChunks: () =>
            Array.from({ length: Math.ceil(raw.length / heldInChunksOf) }, (_, i) => raw.subarray(i * heldInChunksOf, (i + 1) * heldInChunksOf)),
        }
      : {}),
  };
}

export const silentLogger = pino({ level: 'silent' });

/** Runs one check at `stage` over `facts` (and a message at data); returns the output. */
export async function runCheck(check: Check, stage: Stage, facts: Record<string, FactValue>, message?: MessageView): Promise<CheckOutput & { facts: FactSet }> {
  const fs = new FactSet(Object.entries(facts));
  const out: CheckOutput = { facts: fs, edits: emptyEdits() };
  const ac = new AbortController();
  await check.run({ stage, connection: detachedConnection(), facts: fs, signal: ac.signal, ...(message ? { message } : {}) }, out);
  return out;
}

export function authConfig(overrides: Partial<Record<keyof AuthConfig, unknown>> = {}): AuthConfig {
  return authConfigSchema.parse(overrides);
}

/** Known failures: suite → case id → reason. */
export type KnownFailures = Record<string, Record<string, string>>;

export function loadKnownFailures(): KnownFailures {
  return loadYaml<KnownFailures>(join(here, 'known-failures.yaml')) ?? {};
}

export interface CaseOutcome {
  id: string;
  ok: boolean;
  detail: string;
}

/**
 * Checks a suite's outcomes against its known-failures list: every failing case must be listed
 * (with a reason) and every listed case must still fail (so the list never goes stale). Prints and
 * returns the summary line.
 */
export function judge(suite: string, label: string, outcomes: readonly CaseOutcome[], known: KnownFailures): string {
  const listed = known[suite] ?? {};
  const failing = outcomes.filter((o) => !o.ok);
  const unexpected = failing.filter((o) => !(o.id in listed));
  const fixed = Object.keys(listed).filter((id) => outcomes.some((o) => o.id === id && o.ok));
  const missing = Object.keys(listed).filter((id) => !outcomes.some((o) => o.id === id));
  const passed = outcomes.length - failing.length;
  const line = `${label}: ${passed}/${outcomes.length} pass, ${failing.length} known failures`;
  console.log(line);
  const problems = [
    ...unexpected.map((o) => `unexpected failure: ${o.id}: ${o.detail}`),
    ...fixed.map((id) => `listed in known-failures.yaml but passes now: ${id}`),
    ...missing.map((id) => `listed in known-failures.yaml but no such case: ${id}`),
  ];
  for (const o of failing.filter((f) => f.id in listed)) console.log(`  known: ${o.id}: ${o.detail}`);
  assert.deepEqual(problems, [], `${label}: ${problems.length} problems`);
  return line;
}
