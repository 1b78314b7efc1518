// Which DNS servers to ask: the configured "ip" / "ip:port" / "[ipv6]:port" list, or the
// `nameserver` lines of /etc/resolv.conf (resolv.conf(5)) when none is configured.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

export interface ServerAddress {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Parses "192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53" or a bare "2001:db8::1". */
export function parseServer(spec: string): ServerAddress {
  const s = spec.trim();
  let host = s;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracket) {
    host = bracket[1] ?? '';
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (s.split(':').length === 2) {
    const [h, p] = s.split(':');
    host = h ?? '';
    port = Number(p);
  }
  // A zone index (fe80::1%eth0) is accepted by the socket layer but not by isIP.
  const family = isIP(host.replace(/%.*$/, ''));
  if (family === 0) throw new Error(`DNS server "${spec}" is not an IP address (host names can not be resolved before DNS works)`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`DNS server "${spec}" has an invalid port`);
  return { host, port, family: family as 4 | 6 };
}

/** Servers from resolv.conf text; empty if there are none. */
export function parseResolvConf(text: string): ServerAddress[] {
  const out: ServerAddress[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (!m?.[1]) continue;
    try {
      out.push(parseServer(m[1]));
    } catch {
      // resolv.conf(5): a malformed line is ignored
    }
  }
  return out;
}

/** The system's resolvers, or 127.0.0.1:53 (the resolv.conf default) if none are listed. */
export function systemServers(path = '/etc/resolv.conf'): ServerAddress[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    // no resolv.conf: the C library falls back to the local host, so do we
  }
  const servers = parseResolvConf(text);
  return servers.length > 0 ? servers : [{ host: '127.0.0.1', port: 53, family: 4 }];
}
