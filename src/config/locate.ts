// Which config file a command uses when none is given: $MAILGATE_CONFIG, then ./mailgate.yaml,
// then /etc/mailgate/mailgate.yaml (the packaged location), like postconf's -c / MAIL_CONFIG.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { SourceError, SourceErrors } from './yaml-source.ts';

/** The default search list after $MAILGATE_CONFIG; the first that exists wins. */
export const CONFIG_SEARCH_PATH: readonly string[] = ['./mailgate.yaml', '/etc/mailgate/mailgate.yaml'];

export interface LocateOptions {
  env?: NodeJS.ProcessEnv;
  exists?: (path: string) => boolean;
  cwd?: string;
}

/**
 * The config file to load. An explicit `--config FILE` or $MAILGATE_CONFIG is used as given (a
 * missing file is then an error about that file, never a silent fall-through to another one).
 * Otherwise the first existing file of CONFIG_SEARCH_PATH; none → SourceErrors naming every path tried.
 */
export function locateConfig(explicit?: string, opts: LocateOptions = {}): string {
  const env = opts.env ?? process.env;
  const exists = opts.exists ?? existsSync;
  if (explicit !== undefined && explicit !== '') return explicit;
  const fromEnv = env.MAILGATE_CONFIG;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const cwd = opts.cwd ?? process.cwd();
  for (const p of CONFIG_SEARCH_PATH) if (exists(resolve(cwd, p))) return p;
  throw new SourceErrors([
    new SourceError(
      CONFIG_SEARCH_PATH[0] as string,
      0,
      '',
      `no config file: tried $MAILGATE_CONFIG (unset), ${CONFIG_SEARCH_PATH.join(', ')}; pass --config FILE, or start from the example: cp mailgate.example.yaml mailgate.yaml`,
    ),
  ]);
}
