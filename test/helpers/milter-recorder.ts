// A tiny recording milter for tests: accepts the MTA's milter connections on a free loopback
// port, answers like mailgate negotiates (our actions and no-reply steps) with CONTINUE to every
// step that wants an answer, and keeps the exact bytes the MTA sent, per connection.
import net from 'node:net';
import { Cmd, encode, PacketReader, Step, WANTED_ACTIONS, WANTED_STEPS } from '../../src/fronts/milter/protocol.ts';

export interface MilterRecorder {
  port: number;
  /** Raw bytes received, one Buffer per connection, in connection order. */
  connections(): Buffer[];
  close(): Promise<void>;
}

export async function startMilterRecorder(): Promise<MilterRecorder> {
  const recorded: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    const chunks: Buffer[] = [];
    recorded.push(chunks);
    const reader = new PacketReader();
    let steps = 0;
    s.on('data', (d: Buffer) => {
      chunks.push(Buffer.from(d));
      for (const p of reader.push(d)) {
        const nr = (flag: number) => (steps & flag) !== 0;
        switch (p.cmd) {
          case Cmd.OPTNEG: {
            const actions = p.payload.readUInt32BE(4);
            const protocol = p.payload.readUInt32BE(8);
            steps = WANTED_STEPS & protocol;
            s.write(encode.optneg(6, WANTED_ACTIONS & actions, steps));
            break;
          }
          case Cmd.CONNECT:
          case Cmd.HELO:
          case Cmd.MAIL:
          case Cmd.RCPT:
          case Cmd.BODYEOB:
            s.write(encode.continue());
            break;
          case Cmd.HEADER:
            if (!nr(Step.NR_HDR)) s.write(encode.continue());
            break;
          case Cmd.EOH:
            if (!nr(Step.NR_EOH)) s.write(encode.continue());
            break;
          case Cmd.BODY:
            if (!nr(Step.NR_BODY)) s.write(encode.continue());
            break;
          case Cmd.DATA:
            if (!nr(Step.NR_DATA)) s.write(encode.continue());
            break;
          case Cmd.UNKNOWN:
            if (!nr(Step.NR_UNKN)) s.write(encode.continue());
            break;
          case Cmd.QUIT:
            s.end();
            break;
          default:
            break; // MACRO, ABORT, QUIT_NC: no reply
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections: () => recorded.map((c) => Buffer.concat(c)),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
