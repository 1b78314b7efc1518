// What `config check` and `serve --check` verify beyond the schema: files the config names must
// be readable (TLS key and certificate), and settings that are valid but risky earn a warning,
// each as FILE:LINE: KEY: message (issue 14, items 11 and 12).
import { accessSync, constants, readFileSync } from 'node:fs';
import { isMaildirBackend, type Config } from './schema.ts';
import { formatPath, lineOf, parseYaml, SourceError, type YamlSource } from './yaml-source.ts';

/**
 * RFC 5321 4.5.3.2.6: a client waits 10 minutes for the reply to the end of data. Our backend
 * timeout must end well before, or the client gives up first and retries a message the backend
 * may have queued (a duplicate: README "Duplicate delivery").
 */
export const CLIENT_DATA_TIMEOUT_MS = 600_000;

export interface ConfigFindings {
  errors: SourceError[];
  /** Messages start with "warning: " after FILE:LINE: KEY:. */
  warnings: SourceError[];
}

export function checkConfig(file: string, config: Config): ConfigFindings {
  let src: YamlSource | undefined;
  try {
    src = parseYaml(file, readFileSync(file, 'utf8'));
  } catch {
    // Already loaded once: only the line numbers would be missing.
  }
  const at = (path: PropertyKey[], message: string) => new SourceError(file, src ? lineOf(src, path) : 0, formatPath(path), message);
  const errors: SourceError[] = [];
  const warnings: SourceError[] = [];
  config.listen.forEach((l, i) => {
    if (!l.tls) return;
    for (const k of ['key', 'cert'] as const) {
      try {
        accessSync(l.tls[k], constants.R_OK);
      } catch (err) {
        errors.push(at(['listen', i, 'tls', k], `cannot read ${l.tls[k]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`));
      }
    }
  });
  config.listen.forEach((l, i) => {
    if (!Array.isArray(l.proxy_protocol)) return;
    l.proxy_protocol.forEach((e, j) => {
      if (/^(0\.0\.0\.0|::)\/0$/.test(e)) {
        warnings.push(at(['listen', i, 'proxy_protocol', j], `warning: ${e} trusts every peer to claim any client address: list the load balancers only`));
      }
    });
  });
  if (config.admin !== false && !isLoopback(config.admin.host)) {
    warnings.push(
      at(
        ['admin', 'host'],
        `warning: ${config.admin.host} is not a loopback address: /metrics and /readyz have no authentication, keep them on 127.0.0.1 or behind a firewall`,
      ),
    );
  }
  if (config.backend && !isMaildirBackend(config.backend) && config.backend.data_timeout_ms >= CLIENT_DATA_TIMEOUT_MS) {
    warnings.push(
      at(
        ['backend', 'data_timeout_ms'],
        `warning: ${config.backend.data_timeout_ms} ms is not below the ${CLIENT_DATA_TIMEOUT_MS} ms clients wait for the end-of-data reply (RFC 5321 4.5.3.2.6): a client that gives up first retries a message the backend may have queued, and it is delivered twice`,
      ),
    );
  }
  return { errors, warnings };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
