// Fuzzing the config loader (src/config/load.ts) and the rules loader (src/rules/loader.ts):
// random YAML text, random JSON-shaped documents and mutations of valid files either load or
// throw SourceErrors whose every problem names the file and a line — never any other exception.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { runFuzz } from '../helpers/fuzz.ts';

function onlyLocatedErrors(file: string, fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof SourceErrors)) throw new Error(`not a located error: ${(err as Error)?.stack ?? String(err)}`);
    assert.ok(err.problems.length > 0);
    for (const p of err.problems) {
      assert.ok(p.message.startsWith(`${file}:`), p.message);
      assert.ok(Number.isInteger(p.line) && p.line >= 0, p.message);
    }
  }
}

const yamlToken = fc.oneof(
  fc.constantFrom(
    ':',
    ': ',
    '- ',
    '-',
    '[',
    ']',
    '{',
    '}',
    ',',
    '&a ',
    '*a',
    '!!binary ',
    '!!map',
    '? ',
    '|',
    '>',
    '\t',
    '  ',
    '\n',
    '#',
    '"',
    "'",
    '%YAML 1.2\n',
    '---\n',
    '...\n',
    '<<: *a',
    'null',
    '~',
    'true',
    '0x1F',
    '1e309',
    '-0',
    '.nan',
  ),
  fc.constantFrom(
    'hostname',
    'listen',
    'port',
    'domains',
    'backend',
    'host',
    'limits',
    'smtp',
    'proxy_protocol',
    'tls',
    'spool_dir',
    'rules',
    'name',
    'when',
    'score',
    'actions',
    'regex',
    'glob',
  ),
  fc.string({ maxLength: 6 }),
);
const randomYaml = fc.array(yamlToken, { maxLength: 40 }).map((a) => a.join(''));
const jsonDoc = fc.jsonValue({ maxDepth: 4 }).map((v) => YAML.stringify(v));

const VALID_CONFIG = {
  hostname: 'mx.example.test',
  listen: [{ host: '127.0.0.1', port: 2525, proxy_protocol: ['10.0.0.5'] }],
  domains: ['example.test'],
  backend: { host: '127.0.0.1', port: 10025, data_timeout_ms: 120000 },
  limits: { max_message_bytes: 1000000, max_session_s: 3600 },
  smtp: { bare_newlines: 'normalize', nul_bytes: 'strip', strip_headers: ['X-A-*'] },
  quarantine: { dir: 'var/quarantine' },
  spool_dir: 'var/spool',
};
/** A valid document with values at random paths replaced by random JSON. */
function mutated(valid: object) {
  return fc
    .array(fc.tuple(fc.array(fc.oneof(fc.string({ maxLength: 12 }), fc.nat(3)), { minLength: 1, maxLength: 3 }), fc.jsonValue({ maxDepth: 2 })), {
      maxLength: 4,
    })
    .map((edits) => {
      const doc = structuredClone(valid) as Record<string, unknown>;
      for (const [path, value] of edits) {
        let node: unknown = doc;
        for (let i = 0; i < path.length - 1; i++) {
          if (node === null || typeof node !== 'object') break;
          node = (node as Record<string, unknown>)[String(path[i])];
        }
        if (node !== null && typeof node === 'object') (node as Record<string, unknown>)[String(path.at(-1))] = value;
      }
      return YAML.stringify(doc);
    });
}

test('fuzz: the config loader only ever throws located errors', (t) => {
  const runs = runFuzz(
    'config loader',
    fc.property(fc.oneof(randomYaml, jsonDoc, mutated(VALID_CONFIG)), (text) => onlyLocatedErrors('x.yaml', () => parseConfig('x.yaml', text, {}))),
  );
  t.diagnostic(`runs ${runs}`);
});

const VALID_RULES = {
  rules: [
    { name: 'A', description: 'd', when: { 'message.subject': { regex: '/x/i' } }, score: 1 },
    { name: 'B', description: 'd', when: { any: [{ 'client.ip': { cidr: '192.0.2.0/24' } }, { 'helo.name': { glob: '*.example' } }] }, score: 2 },
  ],
  actions: { reject: 15, quarantine: 8 },
};
const facts = knownFacts();
const dir = mkdtempSync(join(tmpdir(), 'mailgate-fuzz-rules-'));
const file = join(dir, '10-fuzz.yaml');
const regexish = fc
  .array(fc.constantFrom('(', ')', '\\1', '(?=', '(?<!', '*', '+', '?', '{2,}', '[', ']', 'a', '|', '^', '$', '/', '\\'), { maxLength: 10 })
  .map((a) => a.join(''));
const ruleWithPattern = fc
  .tuple(fc.constantFrom('regex', 'glob'), regexish)
  .map(([op, p]) =>
    YAML.stringify({ rules: [{ name: 'P', description: 'd', when: { 'message.subject': { [op]: op === 'regex' ? `/${p}/` : p } }, score: 1 }] }),
  );

test('fuzz: the rules loader only ever throws located errors', (t) => {
  const runs = runFuzz(
    'rules loader',
    fc.property(fc.oneof(randomYaml, jsonDoc, mutated(VALID_RULES), ruleWithPattern), (text) => {
      writeFileSync(file, text);
      onlyLocatedErrors(file, () => loadRules(dir, facts));
    }),
  );
  t.diagnostic(`runs ${runs}`);
});
