// Maps the macros Postfix sends to a milter ({client_addr}, {tls_version}, i, {auth_authen} …) to
// the facts the SMTP front records for the same thing, so one rules file reads the same facts
// whichever front a message came through (names: src/pipeline/core-facts.ts).
import { isIP } from 'node:net';
import type { FactValue } from '../../pipeline/facts.ts';

/** Macros as Postfix defines them (postconf milter_*_macros), braces stripped. */
export type Macros = ReadonlyMap<string, string>;

/** Caps what we keep of one macro value: they come from the MTA, but a fact is not a blob. */
const MAX_VALUE = 1024;

function get(m: Macros, name: string): string | undefined {
  const v = m.get(name);
  if (v === undefined || v === '') return undefined;
  return v.length > MAX_VALUE ? v.slice(0, MAX_VALUE) : v;
}

/**
 * Connection facts: the CONNECT packet gives address and port; macros add what the SMTP front
 * knows from its own socket. `{client_addr}`/`{client_port}` win over the packet when both are
 * present (Postfix sends the real client, after XCLIENT/postscreen, in both).
 */
export function connectionFacts(packet: { address: string; port: number }, m: Macros): Map<string, FactValue> {
  const f = new Map<string, FactValue>();
  const ip = normalizeIp(get(m, 'client_addr') ?? packet.address);
  // A client without an IP (a unix-socket client; Postfix reports local submission as
  // 127.0.0.1 already) is local: `client.ip` is an ip-typed fact, so never a path or "".
  f.set('client.ip', isIP(ip) !== 0 ? ip : '127.0.0.1');
  const port = Number(get(m, 'client_port') ?? packet.port);
  f.set('client.port', Number.isInteger(port) && port >= 0 && port <= 65535 ? port : 0);
  const localPort = Number(get(m, 'daemon_port') ?? '');
  if (Number.isInteger(localPort) && localPort > 0 && localPort <= 65535) f.set('client.local_port', localPort);
  // Postfix (not the milter) terminated any PROXY protocol: the client address is already real.
  f.set('client.proxied', false);
  const name = get(m, 'client_name');
  // "unknown" is Postfix's word for "no verified reverse name" (smtpd_client_restrictions).
  if (name !== undefined) f.set('milter.client_name', name === 'unknown' ? '' : name.toLowerCase());
  const daemon = get(m, 'daemon_name');
  if (daemon !== undefined) f.set('milter.daemon_name', daemon);
  const j = get(m, 'j');
  if (j !== undefined) f.set('milter.mta_hostname', j);
  return f;
}

/** TLS facts as the SMTP front sets them at MAIL (tls, tls.version, tls.cipher). */
export function tlsFacts(m: Macros): Map<string, FactValue> {
  const f = new Map<string, FactValue>();
  const version = get(m, 'tls_version');
  const cipher = get(m, 'cipher');
  f.set('tls', version !== undefined || cipher !== undefined);
  if (version !== undefined) f.set('tls.version', version);
  if (cipher !== undefined) f.set('tls.cipher', cipher);
  return f;
}

/** Facts at the start of the message: the MTA's queue id (Postfix assigns it after the first RCPT). */
export function dataMacroFacts(m: Macros): Map<string, FactValue> {
  const f = new Map<string, FactValue>();
  const qid = get(m, 'i');
  if (qid !== undefined) f.set('milter.queue_id', qid);
  return f;
}

/** Facts only a milter learns: the MTA's queue id and SASL login (SMTP AUTH happens in Postfix). */
export function mailMacroFacts(m: Macros): Map<string, FactValue> {
  const f = new Map<string, FactValue>();
  const qid = get(m, 'i');
  if (qid !== undefined) f.set('milter.queue_id', qid);
  const authen = get(m, 'auth_authen');
  f.set('milter.authenticated', authen !== undefined);
  if (authen !== undefined) f.set('milter.auth_user', authen);
  return f;
}

/**
 * ESMTP parameters of MAIL/RCPT ("SIZE=123", "SMTPUTF8") as the SMTP front gets them from
 * smtp-server: keys upper-cased, a bare keyword is `true`.
 */
export function esmtpArgs(args: readonly string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (const a of args.slice(0, 32)) {
    const eq = a.indexOf('=');
    if (eq < 0) out[a.toUpperCase()] = true;
    else out[a.slice(0, eq).toUpperCase()] = a.slice(eq + 1);
  }
  return out;
}

/** "::ffff:192.0.2.1" → "192.0.2.1", like the SMTP front does for its sockets. */
function normalizeIp(ip: string): string {
  const s = ip.trim();
  return s.toLowerCase().startsWith('::ffff:') && s.includes('.') ? s.slice(7) : s;
}

/** Facts only the milter front sets (declared for rule validation). */
export { milterFacts } from '../../pipeline/core-facts.ts';
