// For quarantine end-to-end tests: a private Postfix, a gateway whose rules quarantine any message
// with QUARANTINE-ME in the subject, a config file for the CLI, and Maildir reading helpers.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startPostfix, type PostfixInstance } from './postfix.ts';
import { startGateway, testConfig, type TestGateway } from './gateway.ts';
import { makeRulesDir } from './rules-dir.ts';
import { sendMessage } from './smtp-client.ts';

export const QUARANTINE_RULES = {
  '10-quarantine.yaml':
    'rules:\n  - name: QUARANTINE_ME\n    description: test rule\n    when: { message.subject: { glob: "*QUARANTINE-ME*" } }\n    action: quarantine\n',
};

export interface QuarantineEnv {
  pf: PostfixInstance;
  gw: TestGateway;
  dir: string;
  qdir: string;
  configFile: string;
  /** Sends a message the rules quarantine; returns its id (from the 250 reply) and the raw data. */
  quarantine(o?: {
    subject?: string;
    body?: string;
    headers?: string;
    to?: string[];
  }): Promise<{ id: string; tok: string; code: number | undefined; text: string }>;
  /** Messages delivered to a Postfix user whose content includes `needle`. */
  delivered(user: string, needle: string): Buffer[];
  waitDelivered(user: string, needle: string, count?: number, ms?: number): Promise<Buffer[]>;
  cli(args: string[], stdin?: string): Promise<{ code: number; out: string; err: string }>;
  close(): Promise<void>;
}

export async function startQuarantineEnv(
  o: { quarantine?: Record<string, unknown>; admin?: Record<string, unknown> | false; extraYaml?: string } = {},
): Promise<QuarantineEnv> {
  const pf = await startPostfix();
  const dir = mkdtempSync(join(tmpdir(), 'mg-qe2e-'));
  const qdir = join(dir, 'quarantine');
  const rules = makeRulesDir(QUARANTINE_RULES);
  const quarantine = { dir: qdir, ...o.quarantine };
  let gw: TestGateway;
  try {
    gw = await startGateway(
      testConfig({
        backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
        rules,
        quarantine,
        admin: o.admin ?? false,
      }),
    );
  } catch (err) {
    // The test's after() has no env to close: nothing may be left running (a Postfix, its dirs).
    pf.destroy();
    rmSync(dir, { recursive: true, force: true });
    rmSync(rules, { recursive: true, force: true });
    throw err;
  }
  const configFile = join(dir, 'mailgate.yaml');
  writeFileSync(
    configFile,
    `hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: ${pf.port} }\nrules: ${rules}\nquarantine: ${JSON.stringify(quarantine)}\nadmin: false\n${o.extraYaml ?? ''}`,
  );
  const find = (user: string, needle: string): Buffer[] => {
    const out: Buffer[] = [];
    for (const sub of ['new', 'cur']) {
      const d = join(pf.mailBase, user, sub);
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d)) {
        const c = readFileSync(join(d, f));
        if (c.includes(needle)) out.push(c);
      }
    }
    return out;
  };
  return {
    pf,
    gw,
    dir,
    qdir,
    configFile,
    async quarantine(m = {}) {
      const tok = `tok-${randomBytes(6).toString('hex')}`;
      const data =
        `From: Sender <sender@client.example.net>\r\nTo: alice@example.test\r\nSubject: ${m.subject ?? 'QUARANTINE-ME'} ${tok}\r\n` +
        `Message-ID: <${tok}@client.example.net>\r\nDate: ${new Date().toUTCString()}\r\n${m.headers ?? ''}\r\n${m.body ?? `Hello ${tok}.\r\n`}`;
      const r = await sendMessage(gw.port, { from: 'sender@client.example.net', to: m.to ?? ['alice@example.test'], data });
      const id = /\((\w+)\)$/.exec(r.end?.text ?? '')?.[1] ?? '';
      return { id, tok, code: r.end?.code, text: r.end?.text ?? '' };
    },
    delivered: find,
    async waitDelivered(user, needle, count = 1, ms = 15_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const f = find(user, needle);
        if (f.length >= count || Date.now() > deadline) return f;
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    cli(args, stdin) {
      return new Promise((resolve) => {
        const child = execFile(
          process.execPath,
          ['src/cli/main.ts', 'quarantine', ...args, '--config', configFile],
          { encoding: 'latin1' },
          (err, out, errOut) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out, err: errOut }),
        );
        child.stdin?.end(stdin ?? '');
      });
    },
    async close() {
      await gw.stop(500);
      pf.destroy();
      rmSync(dir, { recursive: true, force: true });
      rmSync(rules, { recursive: true, force: true });
    },
  };
}

/**
 * Asserts helper: `delivered` (Postfix Maildir, LF line ends) is `stored` (CRLF) with only header
 * fields added in front; returns the names of the added fields.
 */
export function addedHeaders(delivered: Buffer, stored: Buffer): string[] | undefined {
  const d = delivered.toString('latin1');
  const s = stored.toString('latin1').replace(/\r\n/g, '\n');
  if (!d.endsWith(s)) return undefined;
  const prefix = d.slice(0, d.length - s.length);
  const names: string[] = [];
  for (const line of prefix.split('\n')) {
    if (line === '') continue;
    if (line.startsWith(' ') || line.startsWith('\t')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    names.push(line.slice(0, colon));
  }
  return names;
}
