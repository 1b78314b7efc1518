// Load only what the config uses (issue 16): `mailgate serve` with the shipped example config
// must not import the packages of features that config leaves off — Redis (ioredis), a
// PostgreSQL quarantine index (pg), tracing (the OpenTelemetry SDK and exporter), the console's
// message parser (mailparser and its HTML stack), the zip and OLE parsers before such an attachment,
// Node's bundled undici — while the features it has on are loaded; with every check disabled (a
// plain relay) neither mailauth nor the content parsers load, and mail is still relayed. A module
// hook in the served process records every package it loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { closedPort, loopbackDns } from '../helpers/gateway.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { catalogue } from '../../src/checks/catalogue.ts';

const root = resolve(import.meta.dirname, '..', '..');

// Written into the served process with --import: package names of every module it loads, saved at exit.
const HOOK = `import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';
const seen = new Set();
registerHooks({ load(url, ctx, next) { const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(url); if (m) seen.add(m[1]); return next(url, ctx); } });
process.on('exit', () => writeFileSync(process.env.LOADED_OUT, JSON.stringify([...seen].sort())));
`;

// Node's own modules only, without a load hook (with one, even require() of node:http goes through
// the ESM wrapper): "node:undici" when Node's bundled undici (fetch, WebSocket) was loaded, which
// the ESM wrapper of node:http does (it reads every export, lazy ones included).
const BUILTINS_HOOK = `import { writeFileSync } from 'node:fs';
process.on('exit', () => writeFileSync(process.env.LOADED_OUT, JSON.stringify(process.moduleLoadList.some((m) => m.includes('internal/deps/undici')) ? ['node:undici'] : [])));
`;

async function loadedPackages(
  dir: string,
  overrides: Record<string, unknown>,
  hook = HOOK,
  during?: (port: number) => Promise<void>,
): Promise<{ loaded: string[]; log: string }> {
  const example = parse(readFileSync(join(root, 'mailgate.example.yaml'), 'utf8')) as Record<string, unknown>;
  const port = await closedPort();
  const cfg = {
    ...example,
    listen: [{ host: '127.0.0.1', port }],
    backend: { maildir: join(dir, 'delivered') },
    rules: join(root, 'rules'),
    quarantine: { dir: join(dir, 'quarantine') },
    dns: { servers: [await loopbackDns()] },
    ...overrides,
  };
  writeFileSync(join(dir, 'mailgate.yaml'), stringify(cfg));
  writeFileSync(join(dir, 'hook.mjs'), hook);
  const out = join(dir, 'loaded.json');
  const child = spawn(
    process.execPath,
    ['--import', join(dir, 'hook.mjs'), join(root, 'src', 'cli', 'main.ts'), 'serve', '--config', join(dir, 'mailgate.yaml')],
    {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOADED_OUT: out },
    },
  );
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  for (let i = 0; i < 300 && !log.includes('mailgate listening'); i++) await new Promise((r) => setTimeout(r, 100));
  try {
    assert.match(log, /mailgate listening/);
    await during?.(port);
  } catch (err) {
    child.kill('SIGKILL'); // a failed assertion must not leave the gateway (and the test run) up
    throw err;
  }
  // past the start-up work that may still run after listening
  await new Promise((r) => setTimeout(r, 1000));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, log);
  return { loaded: JSON.parse(readFileSync(out, 'utf8')) as string[], log };
}

test('serve with the shipped config loads no package of a feature it leaves off', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-lazy-'));
  mkdirSync(join(dir, 'delivered'));
  try {
    const { loaded } = await loadedPackages(dir, { admin: { host: '127.0.0.1', port: await closedPort() } });
    // what the config has on is there: the hook sees packages at all
    for (const on of ['mailauth', 'file-type', 'hono', 'pino', 'zod']) assert.ok(loaded.includes(on), `${on} should be loaded: ${loaded.join(' ')}`);
    // smtp-server: only the outbound listener (backscatter.outbound) uses it; the inbound front is our own.
    for (const off of [
      'smtp-server',
      'ioredis',
      'pg',
      '@opentelemetry/sdk-trace',
      '@opentelemetry/exporter-trace-otlp-http',
      'mailparser',
      'html-to-text',
      'htmlparser2',
      // zip and OLE parsers: required on the first such attachment (src/checks/content/)
      'yauzl',
      'cfb',
    ]) {
      assert.ok(!loaded.includes(off), `${off} is loaded, but the config does not use it`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('admin: false does not load the admin HTTP server (hono)', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-lazy-'));
  mkdirSync(join(dir, 'delivered'));
  try {
    const { loaded } = await loadedPackages(dir, { admin: false });
    assert.ok(loaded.includes('mailauth'));
    for (const off of ['hono', '@hono/node-server']) assert.ok(!loaded.includes(off), `${off} is loaded with admin: false`);
    // Node's bundled undici (fetch, Request/Response) is the admin server's (Hono); without it nothing
    // loads it: node:http is taken through process.getBuiltinModule (src/checks/content/http-post.ts)
    const builtins = await loadedPackages(dir, { admin: false }, BUILTINS_HOOK);
    assert.deepEqual(builtins.loaded, [], 'Node loaded its bundled undici with admin: false');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every check disabled (the relay leg) loads neither mailauth nor the content parsers', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-lazy-'));
  mkdirSync(join(dir, 'delivered'));
  try {
    const all = catalogue.flatMap((e) => e.names);
    // A plain message (no encoded words: those would load libmime) is still relayed.
    const relayed = async (port: number): Promise<void> => {
      const r = await sendMessage(port, {
        from: 'sender@example.net',
        to: ['user@example.test'],
        data: 'From: <sender@example.net>\r\nTo: <user@example.test>\r\nSubject: relay leg\r\n\r\nlazy-relay-body\r\n',
      });
      assert.equal(r.end?.code, 250, JSON.stringify(r));
      const files = readdirSync(join(dir, 'delivered'), { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
      assert.ok(
        files.some((f) => readFileSync(join(f.parentPath, f.name), 'utf8').includes('lazy-relay-body')),
        'the message is not in the Maildir',
      );
    };
    const { loaded } = await loadedPackages(dir, { admin: false, checks: { disabled: all } }, HOOK, relayed);
    assert.ok(loaded.includes('pino'), `the hook sees packages: ${loaded.join(' ')}`);
    // mailauth with joi and tldts under it (auth family); file-type and strtok3 (content family);
    // libmime with its charset tables, required on the first encoded word or part header
    for (const off of ['mailauth', 'joi', 'tldts', 'file-type', 'strtok3', 'libmime', 'iconv-lite', 'encoding-japanese']) {
      assert.ok(!loaded.includes(off), `${off} is loaded with every check disabled`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
