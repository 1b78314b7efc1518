// The Sendmail milter wire protocol, version 6, as Postfix speaks it (libmilter's mfdef.h and
// Postfix's milter8.c): length-prefixed packet framing with a hard size limit checked before any
// allocation, decoding of every command Postfix sends and encoding of every reply mailgate writes.

/** Commands the MTA sends (SMFIC_*): the packet's first byte. */
export const Cmd = {
  ABORT: 0x41, // 'A'
  BODY: 0x42, // 'B'
  CONNECT: 0x43, // 'C'
  MACRO: 0x44, // 'D'
  BODYEOB: 0x45, // 'E'
  HELO: 0x48, // 'H'
  QUIT_NC: 0x4b, // 'K': quit, but keep the connection for a new session (new CONNECT follows)
  HEADER: 0x4c, // 'L'
  MAIL: 0x4d, // 'M'
  EOH: 0x4e, // 'N'
  OPTNEG: 0x4f, // 'O'
  QUIT: 0x51, // 'Q'
  RCPT: 0x52, // 'R'
  DATA: 0x54, // 'T'
  UNKNOWN: 0x55, // 'U'
} as const;

/** Replies the milter sends (SMFIR_*). */
export const Reply = {
  ADDRCPT: 0x2b, // '+'
  DELRCPT: 0x2d, // '-'
  ACCEPT: 0x61, // 'a'
  CONTINUE: 0x63, // 'c'
  DISCARD: 0x64, // 'd'
  CHGFROM: 0x65, // 'e'
  ADDHEADER: 0x68, // 'h'
  INSHEADER: 0x69, // 'i'
  CHGHEADER: 0x6d, // 'm'
  PROGRESS: 0x70, // 'p'
  QUARANTINE: 0x71, // 'q'
  REJECT: 0x72, // 'r'
  TEMPFAIL: 0x74, // 't'
  REPLYCODE: 0x79, // 'y'
} as const;

/** Modification actions the milter may use (SMFIF_*), announced in the OPTNEG reply. */
export const Action = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;

/** Protocol step flags (SMFIP_*): steps not to send (NO*) and steps that get no reply (NR_*). */
export const Step = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const;

export const MILTER_VERSION = 6;

/** What mailgate uses: header edits, envelope recipient and sender edits, the HOLD queue. */
export const WANTED_ACTIONS = Action.ADDHDRS | Action.CHGHDRS | Action.ADDRCPT | Action.DELRCPT | Action.QUARANTINE | Action.CHGFROM;

/**
 * Steps mailgate asks for. It needs connect, helo, mail, rcpt (each can be refused), headers,
 * body and end of message; headers, end of headers and body chunks get no reply (NR_*: Postfix
 * streams them without a round trip); DATA and unknown commands are not sent at all. Header
 * values keep their leading space (HDR_LEADSPC) so the message is rebuilt byte for byte.
 */
export const WANTED_STEPS = Step.NR_HDR | Step.NR_EOH | Step.NR_BODY | Step.NODATA | Step.NOUNKNOWN | Step.HDR_LEADSPC;

/** Packets larger than this are refused before allocation (the length prefix is read first). */
export const DEFAULT_MAX_PACKET_BYTES = 1_048_576;

/** A decoded MTA → milter command. */
export type Command =
  | { cmd: 'optneg'; version: number; actions: number; protocol: number }
  | { cmd: 'macro'; for: number; macros: Map<string, string> }
  | { cmd: 'connect'; hostname: string; family: 'inet' | 'inet6' | 'unix' | 'unknown'; port: number; address: string }
  | { cmd: 'helo'; name: string }
  | { cmd: 'mail'; from: string; args: string[] }
  | { cmd: 'rcpt'; to: string; args: string[] }
  | { cmd: 'header'; name: string; value: string }
  | { cmd: 'eoh' }
  | { cmd: 'body'; chunk: Buffer }
  | { cmd: 'eom'; chunk: Buffer }
  | { cmd: 'abort' }
  | { cmd: 'quit' }
  | { cmd: 'quit_nc' }
  | { cmd: 'data' }
  | { cmd: 'unknown'; line: string };

/** A protocol violation by the peer: the connection is closed (with a log line naming `reason`). */
export class MilterProtocolError extends Error {
  readonly reason: 'oversized' | 'empty' | 'malformed' | 'unknown-command';
  constructor(reason: MilterProtocolError['reason'], message: string) {
    super(message);
    this.reason = reason;
  }
}

/**
 * Incremental packet framing. Bytes are pushed as they arrive; complete packets come out. The
 * 4-byte length is validated before the packet buffer is allocated, so a hostile length never
 * costs more than `maxPacketBytes`; partial input is kept as a list of received chunks, so
 * buffered memory is bounded by what the peer actually sent.
 */
export class PacketReader {
  readonly maxPacketBytes: number;
  #head = Buffer.alloc(4);
  #headLen = 0;
  #body: Buffer | undefined;
  #bodyLen = 0;
  #failed: MilterProtocolError | undefined;

  constructor(maxPacketBytes = DEFAULT_MAX_PACKET_BYTES) {
    this.maxPacketBytes = maxPacketBytes;
  }

  /** True when no partial packet is pending (a clean place for the stream to end). */
  get idle(): boolean {
    return this.#headLen === 0 && this.#body === undefined && this.#failed === undefined;
  }

  /**
   * The framing error that ended the stream, once packets completed before it were returned
   * (they are valid and are answered before the connection is closed).
   */
  get failed(): MilterProtocolError | undefined {
    return this.#failed;
  }

  /**
   * Feeds bytes; returns the complete packets (command byte + payload) they finish. A framing
   * error throws MilterProtocolError — or, when packets completed earlier in the same chunk,
   * returns them and sets `failed`; every later push throws it.
   */
  push(chunk: Buffer): Array<{ cmd: number; payload: Buffer }> {
    if (this.#failed) throw this.#failed;
    const out: Array<{ cmd: number; payload: Buffer }> = [];
    try {
      this.#frame(chunk, out);
    } catch (err) {
      if (!(err instanceof MilterProtocolError) || out.length === 0) throw err;
      this.#failed = err;
    }
    return out;
  }

  #frame(chunk: Buffer, out: Array<{ cmd: number; payload: Buffer }>): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#body === undefined) {
        const take = Math.min(4 - this.#headLen, chunk.length - pos);
        chunk.copy(this.#head, this.#headLen, pos, pos + take);
        this.#headLen += take;
        pos += take;
        if (this.#headLen < 4) break;
        const len = this.#head.readUInt32BE(0);
        // The length counts the command byte, so 0 is never valid (libmilter: MI_FAILURE).
        if (len === 0) throw new MilterProtocolError('empty', 'milter packet of length 0');
        if (len > this.maxPacketBytes) throw new MilterProtocolError('oversized', `milter packet of ${len} bytes exceeds the limit of ${this.maxPacketBytes}`);
        this.#body = Buffer.allocUnsafe(len);
        this.#bodyLen = 0;
      }
      const body = this.#body;
      const take = Math.min(body.length - this.#bodyLen, chunk.length - pos);
      chunk.copy(body, this.#bodyLen, pos, pos + take);
      this.#bodyLen += take;
      pos += take;
      if (this.#bodyLen === body.length) {
        out.push({ cmd: body[0] as number, payload: body.subarray(1) });
        this.#body = undefined;
        this.#headLen = 0;
      }
    }
  }
}

/**
 * Splits NUL-terminated strings (every one must be terminated). Header fields are decoded as
 * latin1, one char per byte, so they are re-sent byte for byte; names and addresses as UTF-8,
 * as the SMTP front's parser gives them (SMTPUTF8).
 */
function cstrings(p: Buffer, what: string, encoding: 'latin1' | 'utf8' = 'utf8'): string[] {
  const out: string[] = [];
  let start = 0;
  while (start < p.length) {
    const nul = p.indexOf(0, start);
    if (nul < 0) throw new MilterProtocolError('malformed', `${what}: string not NUL-terminated`);
    out.push(p.toString(encoding, start, nul));
    start = nul + 1;
  }
  return out;
}

function need(p: Buffer, n: number, what: string): void {
  if (p.length < n) throw new MilterProtocolError('malformed', `${what}: ${p.length} bytes, expected at least ${n}`);
}

/** Decodes one packet. Throws MilterProtocolError for malformed payloads and unknown commands. */
export function decodeCommand(cmd: number, p: Buffer): Command {
  switch (cmd) {
    case Cmd.OPTNEG:
      need(p, 12, 'OPTNEG');
      return { cmd: 'optneg', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8) };
    case Cmd.MACRO: {
      need(p, 1, 'MACRO');
      const parts = cstrings(p.subarray(1), 'MACRO');
      if (parts.length % 2 !== 0) throw new MilterProtocolError('malformed', 'MACRO: odd number of name/value strings');
      const macros = new Map<string, string>();
      for (let i = 0; i < parts.length; i += 2) macros.set(stripBraces(parts[i] as string), parts[i + 1] as string);
      return { cmd: 'macro', for: p[0] as number, macros };
    }
    case Cmd.CONNECT: {
      const nul = p.indexOf(0);
      if (nul < 0) throw new MilterProtocolError('malformed', 'CONNECT: hostname not NUL-terminated');
      const hostname = p.toString('utf8', 0, nul);
      need(p, nul + 2, 'CONNECT');
      const fam = p[nul + 1] as number;
      // 'U' (unknown) carries neither port nor address (Postfix for a non-socket client).
      if (fam === 0x55) return { cmd: 'connect', hostname, family: 'unknown', port: 0, address: '' };
      const family = fam === 0x34 ? 'inet' : fam === 0x36 ? 'inet6' : fam === 0x4c ? 'unix' : undefined;
      if (!family) throw new MilterProtocolError('malformed', `CONNECT: unknown address family 0x${fam.toString(16)}`);
      need(p, nul + 4, 'CONNECT');
      const port = p.readUInt16BE(nul + 2);
      const rest = cstrings(p.subarray(nul + 4), 'CONNECT');
      if (rest.length !== 1) throw new MilterProtocolError('malformed', 'CONNECT: expected one address');
      let address = rest[0] as string;
      // Sendmail writes IPv6 addresses as "IPv6:..."; Postfix does not, accept both.
      if (family === 'inet6' && address.toLowerCase().startsWith('ipv6:')) address = address.slice(5);
      return { cmd: 'connect', hostname, family, port, address };
    }
    case Cmd.HELO: {
      const s = cstrings(p, 'HELO');
      if (s.length < 1) throw new MilterProtocolError('malformed', 'HELO: no name');
      return { cmd: 'helo', name: s[0] as string };
    }
    case Cmd.MAIL:
    case Cmd.RCPT: {
      const s = cstrings(p, cmd === Cmd.MAIL ? 'MAIL' : 'RCPT');
      if (s.length < 1) throw new MilterProtocolError('malformed', 'MAIL/RCPT: no address');
      const addr = unbracket(s[0] as string);
      return cmd === Cmd.MAIL ? { cmd: 'mail', from: addr, args: s.slice(1) } : { cmd: 'rcpt', to: addr, args: s.slice(1) };
    }
    case Cmd.HEADER: {
      const s = cstrings(p, 'HEADER', 'latin1');
      if (s.length !== 2) throw new MilterProtocolError('malformed', 'HEADER: expected name and value');
      return { cmd: 'header', name: s[0] as string, value: s[1] as string };
    }
    case Cmd.EOH:
      return { cmd: 'eoh' };
    case Cmd.BODY:
      return { cmd: 'body', chunk: p };
    case Cmd.BODYEOB:
      return { cmd: 'eom', chunk: p };
    case Cmd.ABORT:
      return { cmd: 'abort' };
    case Cmd.QUIT:
      return { cmd: 'quit' };
    case Cmd.QUIT_NC:
      return { cmd: 'quit_nc' };
    case Cmd.DATA:
      return { cmd: 'data' };
    case Cmd.UNKNOWN: {
      const s = cstrings(p, 'UNKNOWN');
      return { cmd: 'unknown', line: s[0] ?? '' };
    }
    default:
      throw new MilterProtocolError('unknown-command', `unknown milter command 0x${cmd.toString(16)}`);
  }
}

/** Macro names arrive as "{client_addr}" or "i": store them without braces. */
export function stripBraces(name: string): string {
  return name.length >= 2 && name.startsWith('{') && name.endsWith('}') ? name.slice(1, -1) : name;
}

/** "<a@b>" → "a@b"; Postfix always brackets, other MTAs may not. */
function unbracket(s: string): string {
  const t = s.trim();
  return t.startsWith('<') && t.endsWith('>') ? t.slice(1, -1) : t;
}

// --- encoding -------------------------------------------------------------------------------

function packet(code: number, payload?: Buffer): Buffer {
  const len = 1 + (payload?.length ?? 0);
  const out = Buffer.allocUnsafe(4 + len);
  out.writeUInt32BE(len, 0);
  out[4] = code;
  if (payload) payload.copy(out, 5);
  return out;
}

const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
/** Header names and values are byte strings (latin1, as decoded): see `headerText`. */
const hstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from([0])]);

/** Our own (UTF-8) text as a header byte string, for the header actions below. */
export function headerText(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** The milter's replies, each a complete packet ready to write. */
export const encode = {
  optneg: (version: number, actions: number, protocol: number) => packet(Cmd.OPTNEG, Buffer.concat([u32(version), u32(actions), u32(protocol)])),
  continue: () => packet(Reply.CONTINUE),
  accept: () => packet(Reply.ACCEPT),
  reject: () => packet(Reply.REJECT),
  tempfail: () => packet(Reply.TEMPFAIL),
  discard: () => packet(Reply.DISCARD),
  progress: () => packet(Reply.PROGRESS),
  /** "550 5.7.1 text": the MTA sends exactly this reply to its client (RFC 5321 4.2, RFC 3463). */
  replycode: (code: number, enhanced: string, text: string) => packet(Reply.REPLYCODE, cstr(formatReply(code, enhanced, text))),
  quarantine: (reason: string) => packet(Reply.QUARANTINE, cstr(reason)),
  // Header actions take byte strings (latin1): the MTA's own values come back unchanged; pass
  // our own text through headerText().
  addHeader: (name: string, value: string) => packet(Reply.ADDHEADER, Buffer.concat([hstr(name), hstr(value)])),
  /** Inserts at `index` (0 = above every header field, Postfix's Received included). */
  insHeader: (index: number, name: string, value: string) => packet(Reply.INSHEADER, Buffer.concat([u32(index), hstr(name), hstr(value)])),
  /** Changes the `index`th (from 1, counted in the header as the milter saw it) field of that name; an empty value deletes it. */
  chgHeader: (index: number, name: string, value: string) => packet(Reply.CHGHEADER, Buffer.concat([u32(index), hstr(name), hstr(value)])),
  addRcpt: (rcpt: string) => packet(Reply.ADDRCPT, cstr(`<${rcpt}>`)),
  delRcpt: (rcpt: string) => packet(Reply.DELRCPT, cstr(`<${rcpt}>`)),
  chgFrom: (from: string) => packet(Reply.CHGFROM, cstr(`<${from}>`)),
} as const;

/**
 * One SMTP reply as REPLYCODE text. Multi-line texts become "550-5.7.1 a\r\n550 5.7.1 b" (RFC
 * 5321 4.2.1). A '%' would be taken as a format character by Sendmail, so it is doubled
 * (libmilter's smfi_setreply does the same check); CR/LF/NUL inside a line are dropped.
 */
export function formatReply(code: number, enhanced: string, text: string): string {
  const lines = text.split('\n').map((l) => l.replace(/[\r\0]/g, '').replace(/%/g, '%%'));
  return lines.map((l, i) => `${code}${i === lines.length - 1 ? ' ' : '-'}${enhanced} ${l}`).join('\r\n');
}
