// Loads mailgate.yaml: parse with positions, validate, resolve relative paths against the file's
// directory, apply MAILGATE_* environment overrides for the few keys deployments set that way.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { configSchema, isMaildirBackend, type Config } from './schema.ts';
import { parseYaml, validate, SourceError, SourceErrors } from './yaml-source.ts';

export interface LoadedConfig {
  config: Config;
  file: string;
  /** Directory relative paths in the config are resolved against. */
  baseDir: string;
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SourceErrors([new SourceError(file, 0, '', `cannot read config: ${(err as Error).message}`)]);
  }
  return parseConfig(file, text, env);
}

export function parseConfig(file: string, text: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const src = parseYaml(file, text);
  if (env.MAILGATE_REDIS_URL !== undefined) src.doc.set('redis', env.MAILGATE_REDIS_URL);
  if (env.MAILGATE_LOG_LEVEL !== undefined) src.doc.setIn(['log', 'level'], env.MAILGATE_LOG_LEVEL);
  const config = validate(src, configSchema);
  const baseDir = dirname(resolve(file));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.rules = abs(config.rules);
  config.quarantine.dir = abs(config.quarantine.dir);
  if (config.spool_dir !== undefined) config.spool_dir = abs(config.spool_dir);
  if (isMaildirBackend(config.backend)) config.backend.maildir = abs(config.backend.maildir);
  if (config.log.file !== undefined) config.log.file = abs(config.log.file);
  for (const l of config.listen) {
    if (l.tls) {
      l.tls.key = abs(l.tls.key);
      l.tls.cert = abs(l.tls.cert);
    }
  }
  if (config.capture && config.capture.file) config.capture.file = abs(config.capture.file);
  if (config.auth.arc_seal) config.auth.arc_seal.key = abs(config.auth.arc_seal.key);
  config.domains = config.domains.map((d) => d.toLowerCase().replace(/\.$/, ''));
  return { config, file: resolve(file), baseDir };
}
