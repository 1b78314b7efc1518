// Loads the Lua scripts in ./lua/ (one atomic operation each, `name-<numberOfKeys>.lua`, `n` =
// variable) into an ioredis client with defineCommand, and calls them through one typed wrapper.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis, ChainableCommander } from 'ioredis';

export const SCRIPTS = {
  rateLimit: 'rate-limit-n.lua',
  greylist: 'greylist-2.lua',
  concurrencyAcquire: 'concurrency-acquire-1.lua',
  concurrencyRefresh: 'concurrency-refresh-1.lua',
  concurrencyRelease: 'concurrency-release-1.lua',
  outboundRecord: 'outbound-record-1.lua',
  outboundSeen: 'outbound-seen-1.lua',
} as const;

export type ScriptName = keyof typeof SCRIPTS;

/** Command names are prefixed so they never shadow an ioredis method. */
const commandName = (name: ScriptName): string => `mailgate_${name}`;

interface ScriptSource {
  lua: string;
  /** undefined = variable: the caller passes the key count first. */
  numberOfKeys: number | undefined;
}

const sources = new Map<ScriptName, ScriptSource>();

/** The script text and key count, from the file name (`-<n>.lua`, `-n.lua` = variable). */
export function scriptSource(name: ScriptName): ScriptSource {
  let s = sources.get(name);
  if (!s) {
    const file = SCRIPTS[name];
    const m = /-(\d+|n)\.lua$/.exec(file);
    if (!m) throw new Error(`script file name without key count: ${file}`);
    const lua = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    s = { lua, numberOfKeys: m[1] === 'n' ? undefined : Number(m[1]) };
    sources.set(name, s);
  }
  return s;
}

export function defineScripts(client: Redis | Cluster): void {
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    const { lua, numberOfKeys } = scriptSource(name);
    client.defineCommand(commandName(name), numberOfKeys === undefined ? { lua } : { lua, numberOfKeys });
  }
}

type ScriptFn = (...args: Array<string | number>) => unknown;

/**
 * Calls script `name` with `keys` and `args` on a client (returns the reply) or queues it on a
 * pipeline (returns the pipeline; the reply comes from exec()). The key count is checked here.
 */
export function callScript(target: Redis | Cluster, name: ScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown>;
export function callScript(target: ChainableCommander, name: ScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): ChainableCommander;
export function callScript(
  target: Redis | Cluster | ChainableCommander,
  name: ScriptName,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): unknown {
  const { numberOfKeys } = scriptSource(name);
  if (numberOfKeys !== undefined && keys.length !== numberOfKeys) {
    throw new Error(`${SCRIPTS[name]} takes ${numberOfKeys} keys, got ${keys.length}`);
  }
  const fn = (target as unknown as Record<string, ScriptFn | undefined>)[commandName(name)];
  if (!fn) throw new Error(`script ${name} is not defined on this client`);
  const head: Array<string | number> = numberOfKeys === undefined ? [keys.length] : [];
  return fn.call(target, ...head, ...keys, ...args);
}
