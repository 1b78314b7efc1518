// Warnings about valid but risky configurations, printed by `mailgate config check` (exit status
// stays 0). Each names the file, line and key, like the errors of src/config/yaml-source.ts.
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import type { Config } from './schema.ts';
import { lineOf, parseYaml } from './yaml-source.ts';

export interface ConfigWarning {
  file: string;
  line: number;
  key: string;
  message: string;
}

export function formatWarning(w: ConfigWarning): string {
  return `${w.file}:${w.line}: ${w.key}: warning: ${w.message}`;
}

export interface WarningOptions {
  /** CPU cores, for `workers: auto` (default: this machine's). */
  cores?: number;
  /** The file's text (default: read from `file`), for line numbers. */
  text?: string;
}

export function configWarnings(file: string, config: Config, opts: WarningOptions = {}): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  let line = (_path: readonly string[]) => 0;
  try {
    const src = parseYaml(file, opts.text ?? readFileSync(file, 'utf8'));
    line = (path) => lineOf(src, path);
  } catch {
    /* the file was already validated; without its text the line is 0 */
  }
  const workers = config.workers === 'auto' ? (opts.cores ?? availableParallelism()) : config.workers;
  if (workers > 1 && config.redis === undefined) {
    // Each node:cluster worker has its own in-process store: a client spread over N workers by
    // the round-robin listener gets up to N times every limit, and greylisting may defer it N times.
    out.push({
      file,
      line: line(['workers']),
      key: 'workers',
      message:
        `${workers} worker processes without 'redis': rate limits, concurrency limits and greylisting are kept per process, ` +
        `so a client can get up to ${workers}x each limit; set 'redis' to share them (docs/operations.md "Scaling out")`,
    });
  }
  return out;
}
