// Milter socket addresses in Postfix's and Sendmail's notation (inet:PORT@HOST, unix:/PATH).
// Dependency-free, in net/ so the config schema validates them without importing the front.

export type MilterAddress = { kind: 'inet'; host: string; port: number } | { kind: 'unix'; path: string };

/**
 * Parses a milter socket address as Postfix and Sendmail write them: `inet:PORT@HOST`
 * (`inet:PORT` = all IPv4 addresses), `inet6:PORT@HOST`, `unix:/PATH` (also `local:`).
 * Returns an error message instead of throwing, for the config validator.
 */
export function parseMilterAddress(s: string): MilterAddress | string {
  const colon = s.indexOf(':');
  if (colon < 0) return 'expected "inet:PORT@HOST" or "unix:/PATH"';
  const scheme = s.slice(0, colon).toLowerCase();
  const rest = s.slice(colon + 1);
  if (scheme === 'unix' || scheme === 'local') {
    if (!rest.startsWith('/')) return 'a unix socket path must be absolute';
    return { kind: 'unix', path: rest };
  }
  if (scheme !== 'inet' && scheme !== 'inet6') return `unknown socket type "${scheme}" (expected inet, inet6 or unix)`;
  const at = rest.indexOf('@');
  const portText = at < 0 ? rest : rest.slice(0, at);
  let host = at < 0 ? (scheme === 'inet6' ? '::' : '0.0.0.0') : rest.slice(at + 1);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return `bad port "${portText}"`;
  if (host === '') return 'empty host';
  return { kind: 'inet', host, port: Number(portText) };
}
