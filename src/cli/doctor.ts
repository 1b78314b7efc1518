// `mailgate doctor`: probes the configured backend MTA for how it parses what mailgate might pass
// on (bare LF/CR end-of-data forms, %-hack, bang paths, quoted local parts, relaying for our
// address) and reports which are dangerous with this backend and what mailgate does about each.
// Attacks compose two parsers (ours and the backend's), so both sides are shown.
import net from 'node:net';
import { loadConfig } from '../config/load.ts';
import { isMaildirBackend } from '../config/schema.ts';
import { SourceErrors } from '../config/yaml-source.ts';

export const HELP_DOCTOR = `NAME
    mailgate doctor - probe the backend MTA for parser differences that matter behind mailgate

SYNOPSIS
    mailgate doctor [--config FILE] [--rcpt ADDRESS] [--via HOST:PORT] [--json]

DESCRIPTION
    Connects to the configured backend (not through mailgate) and tries, each on a fresh
    connection: end of data written as <LF>.<LF>, <CR>.<CR> and <CR><CR><LF>.<CR><CR><LF>;
    recipients with a percent hack (user%host@ours), a bang path (host!user@ours) and a quoted
    local part holding an "@"; and a recipient outside our domains (does the backend relay for
    mailgate's address?). For each it prints the backend's answer, whether that is dangerous
    with this backend, and what mailgate does about it with the current config.

    With --via, the same probes are also sent through a running mailgate at HOST:PORT, and a
    dangerous backend behaviour counts as mitigated only when it does not get through mailgate
    (attacks compose two parsers: ours and the backend's).

    The end-of-data probes may deliver a short message (Subject: mailgate doctor probe) to the
    probe recipient; the recipient probes never send DATA.

OPTIONS
    -c, --config FILE   Configuration file (default: $MAILGATE_CONFIG or ./mailgate.yaml).
    --rcpt ADDRESS      Probe recipient (default postmaster@ the first of 'domains').
    --via HOST:PORT     Also probe through this mailgate listener (e.g. 127.0.0.1:25).
    --json              One JSON object per probe instead of the table.
    -h, --help          This text.

EXIT STATUS
    0 when nothing dangerous is left unmitigated, 1 on a usage or config error, 3 when a
    dangerous backend behaviour is not covered by mailgate's current settings.

EXAMPLES
    mailgate doctor --config /etc/mailgate/mailgate.yaml
`;

export interface DoctorOptions {
  host: string;
  port: number;
  /** Our EHLO name. */
  helo: string;
  /** An existing recipient at the backend, in one of our domains. */
  rcpt: string;
  /** A domain that is not ours, for the relay and routing probes. */
  foreign?: string;
  timeoutMs?: number;
  /** smtp.bare_newlines of the config: what mailgate does with bare CR/LF. */
  bareNewlines: 'normalize' | 'reject';
}

export interface ProbeResult {
  probe: string;
  /** What the backend did, in words, with its reply. */
  backend: string;
  /** The backend behaviour would be exploitable without mailgate in front. */
  dangerous: boolean;
  /** mailgate's current config covers it (with --via: measured through mailgate). */
  mitigated: boolean;
  mailgate: string;
  /** With --via: what happened to the same probe sent through mailgate. */
  viaMailgate?: string;
}

/**
 * Joins backend probes with the same probes sent through mailgate: a dangerous backend behaviour
 * is mitigated when the probe through mailgate is not dangerous.
 */
export function combine(backend: readonly ProbeResult[], via: readonly ProbeResult[]): ProbeResult[] {
  return backend.map((b, i) => {
    const v = via[i];
    if (!v) return b;
    return { ...b, mitigated: !v.dangerous, viaMailgate: v.backend };
  });
}

/** A line-oriented SMTP conversation on a raw socket: exact bytes out, whole replies in. */
class Conversation {
  readonly #socket: net.Socket;
  #buf = '';
  #lines: string[] = [];
  #replies: string[] = [];
  #waiter: ((r: string | undefined) => void) | undefined;
  closed = false;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buf += d;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl).replace(/\r$/, '');
        this.#buf = this.#buf.slice(nl + 1);
        this.#lines.push(line);
        if (line.length < 4 || line[3] !== '-') {
          const reply = this.#lines.join(' / ');
          this.#lines = [];
          if (this.#waiter) {
            const w = this.#waiter;
            this.#waiter = undefined;
            w(reply);
          } else this.#replies.push(reply);
        }
      }
    });
    socket.on('close', () => {
      this.closed = true;
      this.#waiter?.(undefined);
      this.#waiter = undefined;
    });
    socket.on('error', () => undefined);
  }

  static open(host: string, port: number, timeoutMs: number): Promise<Conversation> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new Conversation(s));
      });
      s.once('error', (err) => {
        clearTimeout(t);
        reject(new Error(`cannot connect to ${host}:${port}: ${err.message}`));
      });
    });
  }

  /** The next reply, or undefined on close or after `timeoutMs`. */
  read(timeoutMs: number): Promise<string | undefined> {
    const r = this.#replies.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.#waiter = (x) => {
        clearTimeout(t);
        resolve(x);
      };
    });
  }

  write(raw: string): void {
    if (!this.closed) this.#socket.write(raw, 'latin1');
  }

  async cmd(line: string, timeoutMs: number): Promise<string | undefined> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  close(): void {
    this.#socket.destroy();
  }
}

const code = (r: string | undefined) => (r === undefined ? 0 : Number(r.slice(0, 3)));

async function greet(o: DoctorOptions): Promise<Conversation> {
  const t = o.timeoutMs ?? 5000;
  const c = await Conversation.open(o.host, o.port, t);
  const g = await c.read(t);
  if (code(g) !== 220) {
    c.close();
    throw new Error(`backend greeting: ${g ?? 'none'}`);
  }
  const e = await c.cmd(`EHLO ${o.helo}`, t);
  if (code(e) !== 250) await c.cmd(`HELO ${o.helo}`, t);
  return c;
}

/** End-of-data probe: does the backend end DATA at `eod` (a smuggling primitive)? */
async function probeEndOfData(o: DoctorOptions, name: string, eod: string): Promise<ProbeResult> {
  const t = o.timeoutMs ?? 5000;
  const mitigation =
    o.bareNewlines === 'normalize'
      ? 'smtp.bare_newlines: normalize: bare CR/LF become CRLF and lines starting with "." are dot-stuffed on the backend leg, so the backend never sees this sequence'
      : 'smtp.bare_newlines: reject: the message is refused with 550 5.5.2 before anything reaches the backend';
  const c = await greet(o);
  try {
    const mail = await c.cmd('MAIL FROM:<>', t);
    const rcpt = await c.cmd(`RCPT TO:<${o.rcpt}>`, t);
    if (code(mail) !== 250 || code(rcpt) >= 300) {
      return {
        probe: name,
        backend: `could not start a transaction (MAIL: ${mail ?? 'none'}; RCPT: ${rcpt ?? 'none'}): use --rcpt with an existing mailbox`,
        dangerous: false,
        mitigated: true,
        mailgate: mitigation,
      };
    }
    if (code(await c.cmd('DATA', t)) !== 354) return { probe: name, backend: 'DATA refused', dangerous: false, mitigated: true, mailgate: mitigation };
    c.write(`Subject: mailgate doctor probe (${name})\r\n\r\nprobe${eod}`);
    const early = await c.read(Math.min(t, 1500));
    if (early !== undefined) {
      return { probe: name, backend: `ends DATA at this sequence (answered "${early}")`, dangerous: code(early) < 400, mitigated: true, mailgate: mitigation };
    }
    if (c.closed) return { probe: name, backend: 'dropped the connection (refuses the sequence)', dangerous: false, mitigated: true, mailgate: mitigation };
    c.write('\r\n.\r\n');
    const end = await c.read(t);
    if (end === undefined)
      return {
        probe: name,
        backend: 'no answer to the real end of data (refuses the sequence, or timed out)',
        dangerous: false,
        mitigated: true,
        mailgate: mitigation,
      };
    if (code(end) < 400) return { probe: name, backend: `takes it as message content ("${end}")`, dangerous: false, mitigated: true, mailgate: mitigation };
    return { probe: name, backend: `refuses the message ("${end}")`, dangerous: false, mitigated: true, mailgate: mitigation };
  } finally {
    c.write('QUIT\r\n');
    c.close();
  }
}

/** Recipient probe: does the backend accept `rcpt` (a routing or relay path)? */
async function probeRecipient(o: DoctorOptions, name: string, rcpt: string, mailgate: string): Promise<ProbeResult> {
  const t = o.timeoutMs ?? 5000;
  const c = await greet(o);
  try {
    await c.cmd('MAIL FROM:<>', t);
    const r = await c.cmd(`RCPT TO:<${rcpt}>`, t);
    const accepted = code(r) >= 200 && code(r) < 300;
    return {
      probe: name,
      backend: accepted ? `accepts RCPT TO:<${rcpt}> ("${r}")` : `refuses it ("${r ?? 'no answer'}")`,
      dangerous: accepted,
      mitigated: true,
      mailgate,
    };
  } finally {
    c.write('QUIT\r\n');
    c.close();
  }
}

export async function probeBackend(o: DoctorOptions): Promise<ProbeResult[]> {
  const at = o.rcpt.lastIndexOf('@');
  const user = o.rcpt.slice(0, at);
  const ours = o.rcpt.slice(at + 1);
  const foreign = o.foreign ?? 'doctor.invalid';
  const routing = 'refused at RCPT by mailgate: "550 5.7.1 Relaying denied: routing characters (%, ! or @) in the local part"';
  const results: ProbeResult[] = [];
  results.push(await probeEndOfData(o, 'bare LF end of data <LF>.<LF>', '\n.\n'));
  results.push(await probeEndOfData(o, 'bare CR end of data <CR>.<CR>', '\r.\r'));
  results.push(await probeEndOfData(o, 'end of data <CR><CR><LF>.<CR><CR><LF>', '\r\r\n.\r\r\n'));
  results.push(await probeRecipient(o, 'percent hack', `${user}%${foreign}@${ours}`, routing));
  results.push(await probeRecipient(o, 'bang path', `${foreign}!${user}@${ours}`, routing));
  results.push(await probeRecipient(o, 'quoted local part with "@"', `"${user}@${foreign}"@${ours}`, routing));
  results.push(
    await probeRecipient(
      o,
      "relay for mailgate's address",
      `${user}@${foreign}`,
      'refused at RCPT by mailgate: only the configured domains are accepted ("550 5.7.1 Relaying denied: we do not accept mail for …")',
    ),
  );
  return results;
}

export function formatResults(results: readonly ProbeResult[]): string {
  let out = '';
  for (const r of results) {
    const verdict = !r.dangerous ? 'ok' : r.mitigated ? 'DANGEROUS, mitigated' : 'DANGEROUS';
    out += `${r.probe}\n  backend:  ${r.backend}\n`;
    if (r.viaMailgate !== undefined) out += `  through mailgate: ${r.viaMailgate}\n`;
    out += `  verdict:  ${verdict}\n  mailgate: ${r.mailgate}\n`;
  }
  return out;
}

/** The `mailgate doctor` command; returns the exit status. */
export async function runDoctor(args: string[], io: { out(s: string): void; err(s: string): void }): Promise<number> {
  const take = (...names: string[]) => {
    const i = args.findIndex((a) => names.includes(a));
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  };
  if (args.includes('-h') || args.includes('--help')) {
    io.out(HELP_DOCTOR);
    return 0;
  }
  const json = args.includes('--json');
  if (json) args.splice(args.indexOf('--json'), 1);
  const file = take('-c', '--config') ?? process.env.MAILGATE_CONFIG ?? './mailgate.yaml';
  const rcptOpt = take('--rcpt');
  const via = take('--via');
  if (args.length > 0) {
    io.err(`mailgate: doctor: unexpected argument ${args[0]}\nTry 'mailgate doctor --help'.\n`);
    return 1;
  }
  let config;
  try {
    config = loadConfig(file).config;
  } catch (err) {
    io.err(`${err instanceof SourceErrors ? err.message : (err as Error).message}\n`);
    return 1;
  }
  if (!config.backend) {
    io.err('mailgate: doctor: no backend: in this config (milter only): the MTA in front is the one to probe, with --via\n');
    return 1;
  }
  if (isMaildirBackend(config.backend)) {
    io.err('mailgate: doctor: the backend is a Maildir; there is no MTA to probe\n');
    return 1;
  }
  const backend = config.backend;
  const rcpt = rcptOpt ?? `postmaster@${config.domains[0]}`;
  if (!rcpt.includes('@')) {
    io.err(`mailgate: doctor: --rcpt ${rcpt}: expected user@domain\n`);
    return 1;
  }
  let results: ProbeResult[];
  try {
    results = await probeBackend({
      host: backend.host,
      port: backend.port,
      helo: backend.helo ?? config.hostname,
      rcpt,
      timeoutMs: backend.command_timeout_ms,
      bareNewlines: config.smtp.bare_newlines,
    });
    if (via !== undefined) {
      const colon = via.lastIndexOf(':');
      const port = Number(via.slice(colon + 1));
      if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
        io.err(`mailgate: doctor: --via ${via}: expected HOST:PORT\n`);
        return 1;
      }
      const through = await probeBackend({
        host: via.slice(0, colon).replace(/^\[|\]$/g, ''),
        port,
        helo: 'doctor.invalid',
        rcpt,
        timeoutMs: backend.command_timeout_ms,
        bareNewlines: config.smtp.bare_newlines,
      });
      results = combine(results, through);
    }
  } catch (err) {
    io.err(`mailgate: doctor: ${(err as Error).message}\n`);
    return 2;
  }
  io.out(json ? results.map((r) => JSON.stringify(r)).join('\n') + '\n' : formatResults(results));
  return results.some((r) => r.dangerous && !r.mitigated) ? 3 : 0;
}
