// A real clamd (Debian clamav-daemon) on a private socket with the tiny signature db: EICAR is
// found plain, in a zip and base64-nested in message/rfc822; clamd stopped or hung is a failure
// (tempfail by default) within the timeout; StreamMaxLength is "unscanned", never clean.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createAvCheck } from '../../src/checks/content/av-check.ts';
import { ClamdClient } from '../../src/checks/content/clamd-client.ts';
import { clamavSchema } from '../../src/config/content-schema.ts';
import { emptyEdits, detachedConnection, type CheckOutput } from '../../src/pipeline/check.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { registry } from '../../src/metrics/registry.ts';
import { startClamd, eicar, makeZip, mimeMessage, forwardAsRfc822, messageView, type TestClamd } from '../helpers/content-fixtures.ts';

let clamd: TestClamd;
before(async () => {
  clamd = await startClamd();
});
after(async () => {
  await clamd?.stop();
});

async function runAv(msg: Buffer, cfg: Record<string, unknown>): Promise<CheckOutput> {
  const check = createAvCheck({ config: clamavSchema.parse({ enabled: true, ...cfg }) });
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  await check.run(
    { stage: 'data', connection: detachedConnection(), facts: new FactSet(), message: messageView(msg), signal: new AbortController().signal },
    out,
  );
  return out;
}

const cases = [
  {
    desc: 'EICAR as a plain attachment',
    msg: () => mimeMessage({ attachments: [{ filename: 'eicar.com', type: 'application/octet-stream', data: eicar() }] }),
    virus: true,
  },
  {
    desc: 'EICAR inside a zip',
    msg: () => mimeMessage({ attachments: [{ filename: 'docs.zip', type: 'application/zip', data: makeZip([{ name: 'readme.com', data: eicar() }]) }] }),
    virus: true,
  },
  {
    desc: 'EICAR base64 in a message/rfc822 attachment (base64 itself)',
    msg: () => forwardAsRfc822(mimeMessage({ attachments: [{ filename: 'e.bin', type: 'application/octet-stream', data: eicar() }] })),
    virus: true,
  },
  {
    desc: 'a clean message',
    msg: () => mimeMessage({ attachments: [{ filename: 'a.txt', type: 'text/plain', data: Buffer.from('hello\r\n') }] }),
    virus: false,
  },
];

for (const c of cases) {
  for (const via of ['unix', 'tcp'] as const) {
    test(`clamd (${via}): ${c.desc}`, async () => {
      const out = await runAv(c.msg(), via === 'unix' ? { socket: clamd.socket } : { host: '127.0.0.1', port: clamd.port });
      assert.equal(out.facts.get('av.virus'), c.virus);
      assert.equal(out.facts.get('av.result'), c.virus ? 'virus' : 'clean');
      if (c.virus) assert.match(String(out.facts.get('av.signature')), /Gateway\.Test\.EICAR/);
      assert.equal(out.facts.get('av.unscanned'), false);
    });
  }
}

test('clamd: scan_attachments also scans each decoded attachment', async () => {
  const out = await runAv(mimeMessage({ attachments: [{ filename: 'eicar.com', type: 'application/octet-stream', data: eicar() }] }), {
    socket: clamd.socket,
    scan_attachments: true,
  });
  assert.equal(out.facts.get('av.virus'), true);
  assert.ok((out.facts.get('av.signatures') as string[]).length >= 1);
});

test('clamd: a message over stream_max_bytes is unscanned, not clean', async () => {
  const big = mimeMessage({ attachments: [{ filename: 'big.bin', type: 'application/octet-stream', data: Buffer.alloc(200_000, 1) }] });
  const out = await runAv(big, { socket: clamd.socket, stream_max_bytes: 100_000 });
  assert.equal(out.facts.get('av.result'), 'unscanned');
  assert.equal(out.facts.get('av.unscanned'), true);
  assert.equal(out.facts.get('av.virus'), false);
});

test('clamd: its own StreamMaxLength answer ("size limit exceeded") is unscanned', async () => {
  // The server limit is 25M; claim a bigger client limit so the client sends it all.
  const client = new ClamdClient({ socket: clamd.socket, host: '', port: 0, connectTimeoutMs: 2000, timeoutMs: 20_000, streamMaxBytes: 64 * 1024 * 1024 });
  const chunk = Buffer.alloc(1024 * 1024, 0x41);
  const r = await client.scan(
    (function* () {
      for (let i = 0; i < 27; i++) yield chunk;
    })(),
  );
  assert.equal(r.result, 'unscanned');
});

test('clamd stopped: the check fails (tempfail by default), or av.result=error with on_failure continue', async () => {
  const dead = `${clamd.dir}/no-such.sock`;
  await assert.rejects(runAv(mimeMessage(), { socket: dead }), /clamd/);
  const check = createAvCheck({ config: clamavSchema.parse({ enabled: true, socket: dead }) });
  assert.equal(check.onFailure, 'tempfail');
  const out = await runAv(mimeMessage(), { socket: dead, on_failure: 'continue' });
  assert.equal(out.facts.get('av.result'), 'error');
  assert.equal(out.facts.get('av.unscanned'), true);
});

test('clamd hung (accepts, never answers): fails within the timeout', async () => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('data', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const t0 = Date.now();
  await assert.rejects(runAv(mimeMessage(), { host: '127.0.0.1', port, timeout_ms: 700 }), /did not answer within 700 ms/);
  const took = Date.now() - t0;
  assert.ok(took >= 650 && took < 3000, `took ${took} ms`);
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

test('metrics: mailgate_av_scans_total and the duration histogram are exported', async () => {
  const text = await registry.metrics();
  assert.match(text, /mailgate_av_scans_total\{result="virus"\} [1-9]/);
  assert.match(text, /mailgate_av_scans_total\{result="clean"\} [1-9]/);
  assert.match(text, /mailgate_av_scan_duration_seconds_count [1-9]/);
});

test('readiness: clamd answers PONG', async () => {
  const check = createAvCheck({ config: clamavSchema.parse({ enabled: true, socket: clamd.socket }) });
  assert.deepEqual((await check.readiness?.check())?.ok, true);
});
