// One milter connection from the MTA: negotiates options, then drives the pipeline one command at
// a time (connect, helo, mail, rcpt, header…eom), writing the reply each step needs. An abort
// ends the transaction and the next MAIL starts a fresh one on the same connection; a protocol
// violation closes the connection. Socket-free (feed/close), so it can be fuzzed directly.
import { PassThrough } from 'node:stream';
import type { Logger } from 'pino';
import { Cmd, decodeCommand, encode, MILTER_VERSION, MilterProtocolError, PacketReader, Step, WANTED_ACTIONS, WANTED_STEPS, type Command } from './protocol.ts';
import { connectionFacts, dataMacroFacts, esmtpArgs, mailMacroFacts, tlsFacts } from './macros.ts';
import { eomReplies, stageReply, type SeenHeader } from './reply-map.ts';
import type { MilterPipeline, MilterPipelineFactory, Outcome } from './milter-pipeline.ts';
import { milterMetrics } from './milter-metrics.ts';

export interface MilterSessionOptions {
  id: string;
  log: Logger;
  pipeline: MilterPipelineFactory;
  maxPacketBytes: number;
  /** Writes reply bytes to the MTA. */
  write(data: Buffer): void;
  /** Closes the connection (after the bytes written so far). */
  close(): void;
  /** Backpressure: stop / restart reading from the MTA. */
  pause?(): void;
  resume?(): void;
}

/** The message stream of the open transaction and the pipeline's answer to it. */
interface DataStream {
  stream: PassThrough;
  result: Promise<Outcome>;
  sawEoh: boolean;
}

/** Most header fields per message we keep for CHGHEADER indexes (the spool's header limit applies too). */
const MAX_HEADERS = 10_000;

export class MilterSession {
  readonly #o: MilterSessionOptions;
  readonly #reader: PacketReader;
  #queue: Array<{ c: Command | { cmd: 'violation'; err: unknown }; size: number }> = [];
  #queuedBytes = 0;
  #running = false;
  #closed = false;
  #negotiated = false;
  #actions = 0;
  #steps = 0;
  #pipeline: MilterPipeline;
  #connected = false;
  /** Macros of this connection (connect, helo) and of the current transaction (mail onwards). */
  #connMacros = new Map<string, string>();
  #txMacros = new Map<string, string>();
  #inTx = false;
  #headers: SeenHeader[] = [];
  #data: DataStream | undefined;
  #done: Promise<void> | undefined;
  #settled: () => void = () => undefined;

  constructor(o: MilterSessionOptions) {
    this.#o = o;
    this.#reader = new PacketReader(o.maxPacketBytes);
    this.#pipeline = o.pipeline({ id: o.id, log: o.log });
  }

  /** For tests and shutdown: a transaction is open (MAIL seen, no end of message or abort yet). */
  get inTransaction(): boolean {
    return this.#inTx || this.#data !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes from the MTA. */
  feed(chunk: Buffer): void {
    if (this.#closed) return;
    let packets;
    try {
      packets = this.#reader.push(chunk);
    } catch (err) {
      this.#violation(err);
      return;
    }
    for (const p of packets) {
      let c: Command | { cmd: 'violation'; err: unknown };
      try {
        c = decodeCommand(p.cmd, p.payload);
      } catch (err) {
        // Commands before the bad one are still answered, in order; then the connection closes.
        c = { cmd: 'violation', err };
      }
      this.#queue.push({ c, size: p.payload.length + 5 });
      this.#queuedBytes += p.payload.length + 5;
      if (c.cmd === 'violation') break;
    }
    const failed = this.#reader.failed;
    if (failed && this.#queue.at(-1)?.c.cmd !== 'violation') this.#queue.push({ c: { cmd: 'violation', err: failed }, size: 0 });
    // Bounded buffering: Postfix streams headers and body without waiting (NR_* steps), so
    // stop reading while the pipeline is behind.
    if (this.#queuedBytes > 4 * this.#o.maxPacketBytes) this.#o.pause?.();
    void this.#run();
  }

  /** The MTA closed the connection (or the socket failed). Resolves once every resource is released. */
  end(): Promise<void> {
    if (!this.#closed) {
      if (!this.#reader.idle) {
        milterMetrics.packetsRejected.inc({ reason: 'truncated' });
        this.#o.log.info('milter connection closed in the middle of a packet');
      }
      this.#shutdown();
    }
    return this.#done ?? Promise.resolve();
  }

  #violation(err: unknown): void {
    const reason = err instanceof MilterProtocolError ? err.reason : 'malformed';
    milterMetrics.packetsRejected.inc({ reason });
    this.#o.log.warn({ reason, err: (err as Error).message }, 'milter protocol violation; closing the connection');
    this.#shutdown();
    this.#o.close();
  }

  /** Stops processing and releases the transaction and the pipeline's connection state, once. */
  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#done = new Promise<void>((resolve) => {
      this.#settled = resolve;
    });
    const waitRun = async () => {
      // Let a command in flight finish against the pipeline before it is closed.
      while (this.#running) await new Promise((r) => setImmediate(r));
      await this.#endTransaction();
      if (this.#connected) {
        this.#connected = false;
        await this.#pipeline.close().catch((err: unknown) => this.#o.log.warn({ err: (err as Error).message }, 'pipeline close failed'));
      }
    };
    void waitRun().finally(() => this.#settled());
  }

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (!this.#closed) {
        const next = this.#queue.shift();
        if (!next) break;
        const c = next.c;
        this.#queuedBytes -= next.size;
        if (c.cmd === 'violation') {
          this.#running = false;
          return this.#violation(c.err);
        }
        try {
          await this.#handle(c);
        } catch (err) {
          if (err instanceof MilterProtocolError) {
            this.#running = false;
            return this.#violation(err);
          }
          // A bug or an I/O fault in the pipeline: the MTA gets a tempfail for this step
          // (milter_default_action does not apply to an answered step), the connection goes on.
          this.#o.log.error({ err: (err as Error).message, stack: (err as Error).stack, cmd: c.cmd }, 'milter step failed');
          if (needsReply(c.cmd)) this.#send(encode.replycode(451, '4.3.0', 'Local error in processing, try again later (internal error)'));
        }
      }
    } finally {
      this.#running = false;
      if (this.#queuedBytes <= this.#o.maxPacketBytes) this.#o.resume?.();
    }
    if (!this.#closed && this.#queue.length > 0) void this.#run();
  }

  #send(b: Buffer): void {
    if (!this.#closed) this.#o.write(b);
  }

  #noReply(flag: number): boolean {
    return (this.#steps & flag) !== 0;
  }

  async #handle(c: Command): Promise<void> {
    if (c.cmd !== 'optneg' && !this.#negotiated) throw new MilterProtocolError('malformed', `${c.cmd} before option negotiation`);
    switch (c.cmd) {
      case 'optneg': {
        if (this.#negotiated) throw new MilterProtocolError('malformed', 'second option negotiation');
        if (c.version < 2) throw new MilterProtocolError('malformed', `milter protocol version ${c.version} is too old`);
        this.#negotiated = true;
        // Ask only for what the MTA offers: Postfix refuses a milter that wants more.
        this.#actions = WANTED_ACTIONS & c.actions;
        this.#steps = WANTED_STEPS & c.protocol;
        this.#send(encode.optneg(Math.min(c.version, MILTER_VERSION), this.#actions, this.#steps));
        return;
      }
      case 'macro': {
        const target = c.for === Cmd.CONNECT || c.for === Cmd.HELO ? this.#connMacros : this.#txMacros;
        // A bounded number of macros: the MTA's list is configured, not open-ended.
        for (const [k, v] of c.macros) if (target.size < 256 || target.has(k)) target.set(k, v);
        return;
      }
      case 'connect': {
        if (this.#connected) throw new MilterProtocolError('malformed', 'second CONNECT without QUIT_NC');
        this.#connected = true;
        const o = await this.#pipeline.connect({ id: this.#o.id, facts: connectionFacts(c, this.#connMacros) });
        this.#send(stageReply(o));
        return;
      }
      case 'helo': {
        this.#requireConnected(c.cmd);
        await this.#endTransaction();
        const o = await this.#pipeline.helo(c.name);
        this.#send(stageReply(o));
        return;
      }
      case 'mail': {
        this.#requireConnected(c.cmd);
        // A MAIL while a transaction is open means the MTA moved on (libmilter resets too).
        await this.#endTransaction(false);
        this.#inTx = true;
        const all = new Map([...this.#connMacros, ...this.#txMacros]);
        const facts = new Map([...tlsFacts(all), ...mailMacroFacts(all)]);
        const o = await this.#pipeline.mail(c.from, esmtpArgs(c.args), facts);
        if (o.kind === 'refuse') this.#inTx = false;
        this.#send(stageReply(o));
        return;
      }
      case 'rcpt': {
        if (!this.#inTx) throw new MilterProtocolError('malformed', 'RCPT without MAIL');
        const o = await this.#pipeline.rcpt(c.to, esmtpArgs(c.args));
        this.#send(stageReply(o));
        return;
      }
      case 'data':
        if (!this.#noReply(Step.NR_DATA)) this.#send(encode.continue());
        return;
      case 'unknown':
        if (!this.#noReply(Step.NR_UNKN)) this.#send(encode.continue());
        return;
      case 'header': {
        const d = this.#dataStream();
        if (this.#headers.length < MAX_HEADERS) this.#headers.push({ name: c.name, value: c.value });
        const lead = this.#noReply(Step.HDR_LEADSPC) ? '' : ' ';
        // Folded values arrive with bare LF between lines; the spool wants CRLF.
        await write(d.stream, Buffer.from(`${c.name}:${lead}${c.value.replace(/\r?\n/g, '\r\n')}\r\n`, 'latin1'));
        if (!this.#noReply(Step.NR_HDR)) this.#send(encode.continue());
        return;
      }
      case 'eoh': {
        const d = this.#dataStream();
        if (!d.sawEoh) {
          d.sawEoh = true;
          await write(d.stream, Buffer.from('\r\n'));
        }
        if (!this.#noReply(Step.NR_EOH)) this.#send(encode.continue());
        return;
      }
      case 'body': {
        const d = this.#dataStream();
        if (!d.sawEoh) throw new MilterProtocolError('malformed', 'BODY before end of headers');
        if (c.chunk.length > 0) await write(d.stream, c.chunk);
        if (!this.#noReply(Step.NR_BODY)) this.#send(encode.continue());
        return;
      }
      case 'eom': {
        const d = this.#dataStream();
        if (!d.sawEoh) await write(d.stream, Buffer.from('\r\n'));
        if (c.chunk.length > 0) await write(d.stream, c.chunk);
        d.stream.end();
        const o = await d.result;
        const headers = this.#headers;
        this.#data = undefined;
        this.#headers = [];
        this.#inTx = false;
        this.#txMacros = new Map();
        for (const b of eomReplies(o, headers, { leadingSpace: this.#noReply(Step.HDR_LEADSPC) })) this.#send(b);
        return;
      }
      case 'abort':
        // No reply to ABORT (milter protocol). The connection stays for the next transaction.
        await this.#endTransaction();
        return;
      case 'quit':
        this.#shutdown();
        this.#o.close();
        return;
      case 'quit_nc': {
        // Same connection, new SMTP session: a new CONNECT follows (Postfix reuses milter connections).
        await this.#endTransaction();
        if (this.#connected) await this.#pipeline.close();
        this.#connected = false;
        this.#connMacros = new Map();
        this.#pipeline = this.#o.pipeline({ id: this.#o.id, log: this.#o.log });
        return;
      }
    }
  }

  #requireConnected(what: string): void {
    if (!this.#connected) throw new MilterProtocolError('malformed', `${what} before CONNECT`);
  }

  #dataStream(): DataStream {
    if (!this.#inTx) throw new MilterProtocolError('malformed', 'message content outside a transaction');
    if (!this.#data) {
      const stream = new PassThrough({ highWaterMark: 64 * 1024 });
      const result = this.#pipeline.data(stream, dataMacroFacts(new Map([...this.#connMacros, ...this.#txMacros])));
      // Settles even if nobody awaits it (abort): never an unhandled rejection.
      result.catch(() => undefined);
      this.#data = { stream, result, sawEoh: false };
    }
    return this.#data;
  }

  /** Forgets the open transaction: tells the pipeline, ends the message stream, waits for it. */
  async #endTransaction(resetMacros = true): Promise<void> {
    const d = this.#data;
    const open = this.#inTx || d !== undefined;
    this.#data = undefined;
    this.#headers = [];
    this.#inTx = false;
    if (resetMacros) this.#txMacros = new Map();
    if (!open) return;
    this.#pipeline.abort();
    if (d) {
      d.stream.destroy(new Error('transaction aborted by the MTA'));
      await d.result.catch(() => undefined);
    }
  }
}

function needsReply(cmd: Command['cmd']): boolean {
  return cmd === 'connect' || cmd === 'helo' || cmd === 'mail' || cmd === 'rcpt' || cmd === 'eom';
}

/** Writes with backpressure: waits for 'drain' when the stream's buffer is full. */
function write(s: PassThrough, b: Buffer): Promise<void> {
  if (s.destroyed) return Promise.resolve();
  if (s.write(b)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}
