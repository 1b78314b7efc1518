// `mailgate config dump [-a] [FILE]`: the effective configuration as sorted `key = value` lines,
// like `postconf -n` (only what the file or the environment sets) or, with -a, every key with defaults.
import { readFileSync } from 'node:fs';
import { loadConfig } from '../config/load.ts';
import { configSchema } from '../config/schema.ts';
import { parseYaml, SourceErrors } from '../config/yaml-source.ts';

export const HELP_CONFIG_DUMP = `NAME
    mailgate config dump - print the effective configuration

SYNOPSIS
    mailgate config dump [-a|--all] [FILE]

DESCRIPTION
    Loads FILE (default: $MAILGATE_CONFIG, else ./mailgate.yaml, else
    /etc/mailgate/mailgate.yaml) as 'serve' would, and prints one sorted line per
    setting: 'key = value', nested keys joined with '.', list items as key[N].
    Relative paths are shown resolved; passwords are shown as ***.
    Without -a only the keys the file sets (and MAILGATE_REDIS_URL /
    MAILGATE_LOG_LEVEL, marked '# from $VAR'), like postconf -n; with -a every
    key including defaults, like postconf ('key =' for an optional key left unset).

EXIT STATUS
    0 on success, 1 if the file is invalid (errors as FILE:LINE: KEY: MESSAGE).
`;

/** Environment variables that override a key (src/config/load.ts), and which key. */
const ENV_KEYS: ReadonlyArray<[string, string]> = [
  ['MAILGATE_REDIS_URL', 'redis'],
  ['MAILGATE_LOG_LEVEL', 'log.level'],
];

const MAX_VALUE_CHARS = 4096;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isScalar(v: unknown): boolean {
  return v === null || typeof v !== 'object';
}

/** Hides the password of a URL (redis://:secret@host) without a regex over operator input. */
function maskUrl(s: string): string {
  if (!s.includes('@') || !s.includes('://')) return s;
  try {
    const u = new URL(s);
    if (u.password === '') return s;
    u.password = '***';
    return u.toString();
  } catch {
    return s;
  }
}

export function formatValue(key: string, v: unknown): string {
  const last = key.slice(key.lastIndexOf('.') + 1);
  if (last.includes('password') && v !== undefined) return '***';
  // A collector's auth header (tracing.headers.authorization): as secret as a password.
  if (key.startsWith('tracing.headers.') && v !== undefined) return '***';
  let out: string;
  if (typeof v === 'string') out = v === '' ? '""' : maskUrl(v);
  else if (Array.isArray(v)) out = `[${v.map((x) => (typeof x === 'string' ? maskUrl(x) : JSON.stringify(x))).join(', ')}]`;
  else if (isPlainObject(v)) out = '{}';
  else out = String(v);
  // One line per key whatever the value holds.
  out = out.replaceAll('\n', '\\n');
  return out.length > MAX_VALUE_CHARS ? `${out.slice(0, MAX_VALUE_CHARS)}…` : out;
}

/**
 * Flattens a config value into [key, value] leaves: objects by `.`, lists of scalars stay one
 * value, lists with objects by `[N]`. An empty object is a leaf (`{}`), so `-a` shows every key.
 */
export function flatten(value: unknown, prefix = '', out: Array<[string, unknown]> = []): Array<[string, unknown]> {
  if (isPlainObject(value)) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.length === 0 && prefix !== '') out.push([prefix, value]);
    for (const [k, v] of entries) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out);
  } else if (Array.isArray(value) && !value.every(isScalar)) {
    value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
  } else out.push([prefix, value]);
  return out;
}

/** Minimal view of a zod schema node: its kind, and what it wraps or contains. */
interface SchemaNode {
  def: { type: string; innerType?: SchemaNode; shape?: Record<string, SchemaNode> };
  shape?: Record<string, SchemaNode>;
}

/**
 * Every key path the schema knows for objects (not inside lists or alternatives), so `-a` can
 * show optional keys that have no default as `key =`, like postconf shows empty parameters.
 */
export function schemaKeys(node: SchemaNode, prefix = '', out: string[] = []): string[] {
  let n = node;
  while ((n.def.type === 'default' || n.def.type === 'optional') && n.def.innerType) n = n.def.innerType;
  const shape = n.def.type === 'object' ? (n.shape ?? n.def.shape) : undefined;
  if (shape) for (const [k, v] of Object.entries(shape)) schemaKeys(v, prefix === '' ? k : `${prefix}.${k}`, out);
  else if (prefix !== '') out.push(prefix);
  return out;
}

function coveredBy(key: string, setKeys: ReadonlySet<string>): boolean {
  if (setKeys.has(key)) return true;
  // A key under one the file sets as a whole (e.g. the file says `admin: {}`).
  for (let i = key.length - 1; i > 0; i--) {
    const c = key[i];
    if ((c === '.' || c === '[') && setKeys.has(key.slice(0, i))) return true;
  }
  return false;
}

export interface DumpOptions {
  all?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** The dump as text (sorted lines). Throws SourceErrors for an invalid file. */
export function dumpConfig(file: string, opts: DumpOptions = {}): string {
  const env = opts.env ?? process.env;
  const { config } = loadConfig(file, env);
  const effective = flatten(config);
  const fromEnv = new Map<string, string>();
  for (const [name, key] of ENV_KEYS) if (env[name] !== undefined) fromEnv.set(key, name);
  const mark = (k: string) => {
    const envName = [...fromEnv].find(([ek]) => k === ek || k.startsWith(`${ek}.`))?.[1];
    return envName ? `   # from $${envName}` : '';
  };
  let shown = effective;
  if (!opts.all) {
    const raw = parseYaml(file, readFileSync(file, 'utf8')).doc.toJS() as unknown;
    const setKeys = new Set(flatten(raw ?? {}).map(([k]) => k));
    for (const k of fromEnv.keys()) setKeys.add(k);
    shown = effective.filter(([k]) => coveredBy(k, setKeys));
  }
  const lines: Array<[string, string]> = shown.map(([k, v]) => [k, formatValue(k, v) + mark(k)]);
  if (opts.all) {
    // Optional keys without a default that the file leaves unset (dns.servers, redis, capture …).
    const present = new Set(effective.map(([k]) => k));
    for (const k of schemaKeys(configSchema as unknown as SchemaNode)) {
      if (!coveredBy(k, present) && ![...present].some((p) => p.startsWith(`${k}.`) || p.startsWith(`${k}[`))) lines.push([k, '']);
    }
  }
  lines.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return lines.map(([k, v]) => (v === '' ? `${k} =\n` : `${k} = ${v}\n`)).join('');
}

/** Entry from `mailgate config dump …`; returns the exit status. */
export function runConfigDump(args: string[], defaultPath: () => string): number {
  const rest = [...args];
  let all = false;
  for (let i = rest.length - 1; i >= 0; i--) {
    const a = rest[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(HELP_CONFIG_DUMP);
      return 0;
    }
    if (a === '-a' || a === '--all') {
      all = true;
      rest.splice(i, 1);
    }
  }
  const unknown = rest.find((a) => a.startsWith('-'));
  if (unknown !== undefined || rest.length > 1) {
    process.stderr.write(`mailgate: config dump: unexpected argument ${unknown ?? rest[1]}\nTry 'mailgate config dump --help'.\n`);
    return 1;
  }
  const file = rest[0] ?? defaultPath();
  try {
    process.stdout.write(dumpConfig(file, { all }));
    return 0;
  } catch (err) {
    if (err instanceof SourceErrors) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
