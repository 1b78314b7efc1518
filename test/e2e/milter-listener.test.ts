// The milter listener on real sockets: a Unix socket with the configured mode and owner, the
// connection limit, and a malformed or oversized packet closing the connection with a log line
// (and a metric), while other connections go on.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { MilterListener, resolveOwner } from '../../src/fronts/milter/listener.ts';
import { PacketReader, Reply } from '../../src/fronts/milter/protocol.ts';
import { registry } from '../../src/metrics/registry.ts';
import type { MilterPipelineFactory } from '../../src/fronts/milter/milter-pipeline.ts';

const dirs: string[] = [];
const listeners: MilterListener[] = [];
after(async () => {
  // A failed assertion must not leave a listener holding the test process open.
  for (const l of listeners) await l.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const lines: string[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write: (c, _e, cb) => {
      lines.push(String(c));
      cb();
    },
  }),
);

const pipeline: MilterPipelineFactory = () => ({
  connect: async () => ({ kind: 'continue' }),
  helo: async () => ({ kind: 'continue' }),
  mail: async () => ({ kind: 'continue' }),
  rcpt: async () => ({ kind: 'continue' }),
  data: async (m) => {
    for await (const _ of m) void _;
    return { kind: 'discard' };
  },
  abort: () => undefined,
  close: async () => undefined,
});

function optneg(): Buffer {
  return Buffer.concat([Buffer.from([0, 0, 0, 13, 0x4f]), Buffer.from([0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff])]);
}

/** Connects, sends `bytes`, collects reply packets until the server closes or `ms` pass. */
function talk(addr: { port: number } | { path: string }, bytes: Buffer, ms = 1500): Promise<{ replies: number[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = 'path' in addr ? net.connect(addr.path) : net.connect(addr.port, '127.0.0.1');
    const r = new PacketReader();
    const replies: number[] = [];
    let closed = false;
    s.on('data', (d) => replies.push(...r.push(d).map((p) => p.cmd)));
    s.on('error', () => undefined);
    s.on('close', () => {
      closed = true;
      clearTimeout(t);
      resolve({ replies, closed });
    });
    const t = setTimeout(() => {
      s.destroy();
      resolve({ replies, closed });
    }, ms);
    s.write(bytes);
  });
}

/** A complete milter session: negotiation, one message, QUIT. */
function messageBytes(): Buffer {
  const pkt = (cmd: string, payload: Buffer) => {
    const b = Buffer.alloc(5);
    b.writeUInt32BE(payload.length + 1);
    b[4] = cmd.charCodeAt(0);
    return Buffer.concat([b, payload]);
  };
  const z = (s: string) => Buffer.from(`${s}\0`);
  const port16 = Buffer.alloc(2);
  port16.writeUInt16BE(2525);
  return Buffer.concat([
    optneg(),
    pkt('C', Buffer.concat([z('client.example'), Buffer.from('4'), port16, z('192.0.2.1')])),
    pkt('H', z('client.example')),
    pkt('M', z('<a@example.net>')),
    pkt('R', z('<b@example.test>')),
    pkt('L', Buffer.concat([z('Subject'), z(' hi')])),
    pkt('N', Buffer.alloc(0)),
    pkt('B', Buffer.from('body\r\n')),
    pkt('E', Buffer.alloc(0)),
    pkt('Q', Buffer.alloc(0)),
  ]);
}

function counter(name: string, reason: string): Promise<number> {
  return registry.getSingleMetricAsString(name).then((t) => {
    const m = t.split('\n').find((l) => l.includes(`reason="${reason}"`));
    return m ? Number(m.split(' ').pop()) : 0;
  });
}

describe('milter listener', () => {
  test('unix socket: created with the configured mode and owner, removed on close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgate-milter-sock-'));
    dirs.push(dir);
    const path = join(dir, 'milter.sock');
    const owner = resolveOwner('postfix:postfix');
    const l = new MilterListener({
      address: { kind: 'unix', path },
      mode: 0o660,
      owner: 'postfix:postfix',
      maxConnections: 10,
      maxPacketBytes: 65_536,
      idleTimeoutMs: 10_000,
      pipeline,
      logger,
    });
    listeners.push(l);
    await l.listen();
    const st = statSync(path);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.uid, owner.uid);
    assert.equal(st.gid, owner.gid);
    const r = await talk({ path }, optneg(), 500);
    assert.deepEqual(r.replies, [0x4f], 'OPTNEG answered over the socket');
    await l.close();
    assert.equal(existsSync(path), false);
  });

  test('unix socket: a stale socket file is replaced, a live one is left alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailgate-milter-sock-'));
    dirs.push(dir);
    const path = join(dir, 'milter.sock');
    const opts = { address: { kind: 'unix' as const, path }, maxConnections: 10, maxPacketBytes: 65_536, idleTimeoutMs: 10_000, pipeline, logger };
    // A socket file nobody listens on, as a killed process leaves it (Node unlinks on close, so
    // another process binds it and exits).
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
    assert.ok(existsSync(path), 'stale socket file present');
    const a = new MilterListener(opts);
    listeners.push(a);
    await a.listen();
    assert.deepEqual((await talk({ path }, optneg(), 300)).replies, [0x4f]);
    const b = new MilterListener(opts);
    listeners.push(b);
    await assert.rejects(b.listen(), /EADDRINUSE/);
    assert.deepEqual((await talk({ path }, optneg(), 300)).replies, [0x4f], 'the live one still serves');
    await a.close();
  });

  test('an oversized packet closes that connection with a log line; the listener keeps serving', async () => {
    const l = new MilterListener({
      address: { kind: 'inet', host: '127.0.0.1', port: 0 },
      maxConnections: 10,
      maxPacketBytes: 65_536,
      idleTimeoutMs: 10_000,
      pipeline,
      logger,
    });
    listeners.push(l);
    const port = await l.listen();
    const before = await counter('mailgate_milter_packets_rejected_total', 'oversized');
    const huge = Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x4c]);
    const r = await talk({ port }, Buffer.concat([optneg(), huge]));
    assert.equal(r.closed, true, 'closed by mailgate');
    assert.deepEqual(r.replies, [0x4f]);
    assert.equal(await counter('mailgate_milter_packets_rejected_total', 'oversized'), before + 1);
    assert.ok(
      lines.some((x) => x.includes('milter protocol violation') && x.includes('oversized')),
      'log line',
    );
    const garbage = await talk({ port }, Buffer.concat([optneg(), Buffer.from([0, 0, 0, 1, 0x5a])]));
    assert.equal(garbage.closed, true);
    assert.ok(lines.some((x) => x.includes('unknown milter command 0x5a')));
    const ok = await talk({ port }, optneg(), 300);
    assert.deepEqual(ok.replies, [0x4f], 'a new connection is served');
    await l.close();
  });

  test('connections past limits.max_connections are closed without a reply (Postfix applies milter_default_action)', async () => {
    const l = new MilterListener({
      address: { kind: 'inet', host: '127.0.0.1', port: 0 },
      maxConnections: 1,
      maxPacketBytes: 65_536,
      idleTimeoutMs: 10_000,
      pipeline,
      logger,
    });
    listeners.push(l);
    const port = await l.listen();
    const first = net.connect(port, '127.0.0.1');
    await new Promise((r) => first.once('connect', r));
    await new Promise((r) => setTimeout(r, 100));
    const second = await talk({ port }, optneg(), 1000);
    assert.equal(second.closed, true);
    assert.deepEqual(second.replies, []);
    first.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const third = await talk({ port }, optneg(), 300);
    assert.deepEqual(third.replies, [0x4f]);
    await l.close();
  });

  test('close(grace) lets a transaction in flight finish, refuses new connections meanwhile', async () => {
    const slow: MilterPipelineFactory = (ctx) => {
      const p = pipeline(ctx);
      return {
        ...p,
        data: async (m, f) => {
          await new Promise((r) => setTimeout(r, 400));
          return p.data(m, f);
        },
      };
    };
    const l = new MilterListener({
      address: { kind: 'inet', host: '127.0.0.1', port: 0 },
      maxConnections: 10,
      maxPacketBytes: 65_536,
      idleTimeoutMs: 10_000,
      pipeline: slow,
      logger,
    });
    listeners.push(l);
    const port = await l.listen();
    const inflight = talk({ port }, messageBytes(), 3000);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(l.busy, 1, 'one transaction in flight');
    const closing = l.close(2000);
    const late = await talk({ port }, optneg(), 300);
    assert.deepEqual(late.replies, [], 'no new connection served while draining');
    const r = await inflight;
    assert.equal(r.replies.at(-1), Reply.DISCARD, 'the message got its verdict');
    await closing;
  });

  test('a message through the socket: DISCARD at end of message', async () => {
    const l = new MilterListener({
      address: { kind: 'inet', host: '127.0.0.1', port: 0 },
      maxConnections: 10,
      maxPacketBytes: 65_536,
      idleTimeoutMs: 10_000,
      pipeline,
      logger,
    });
    listeners.push(l);
    const port = await l.listen();
    const bytes = messageBytes();
    const r = await talk({ port }, bytes);
    assert.deepEqual(r.replies, [0x4f, Reply.CONTINUE, Reply.CONTINUE, Reply.CONTINUE, Reply.CONTINUE, Reply.DISCARD]);
    assert.equal(r.closed, true, 'QUIT closes');
    await l.close();
  });
});
