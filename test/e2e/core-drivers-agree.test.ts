// `mailgate rules test` and `mailgate serve` drive the same transaction core: every message of the
// rules corpus (test/fixtures/rules/corpus, envelope + the facts network checks would give in a
// sidecar) goes through the CLI and through SMTP to a private Postfix, and both must end at the
// same stage with the same action and reply. The facts of the sidecar are injected in both
// (runtime.overrides is what `rules test --fact` uses); checks that count or need the network are
// off in both, as in `rules test --offline`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { FactValue } from '../../src/pipeline/facts.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { RawSmtp, type Reply } from '../helpers/smtp-client.ts';

const root = join(import.meta.dirname, '..', '..');
const corpus = join(root, 'test/fixtures/rules/corpus');
const main = join(root, 'src/cli/main.ts');

interface Sidecar {
  ip?: string;
  helo?: string;
  from?: string;
  to?: string[];
  tls?: boolean;
  facts?: Record<string, FactValue>;
}

let pf: PostfixInstance;
let gw: TestGateway;
let configFile: string;

before(async () => {
  pf = await startPostfix();
  // rules test reads the same host name and domains as the gateway (HELO_IS_OUR_NAME depends on them).
  configFile = join(mkdtempSync(join(tmpdir(), 'mailgate-agree-')), 'mailgate.yaml');
  writeFileSync(
    configFile,
    `hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: ${pf.port} }\nrules: ${join(root, 'rules')}\nadmin: false\ncapture: false\n`,
  );
  gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000 },
      rules: join(root, 'rules'),
      capture: false,
      checks: { disabled: ['fcrdns', 'dnsbl', 'spf', 'dkim-arc-dmarc', 'concurrency', 'ratelimit', 'greylist'] },
    }),
  );
});
after(async () => {
  await gw?.stop(1000);
  pf?.destroy();
});

/** One SMTP transaction, stopping at the first refusal: the stage, and the reply there (or at end of DATA). */
async function viaSmtp(raw: Buffer, env: Sidecar): Promise<{ stage: string; reply: Reply | undefined }> {
  const c = await RawSmtp.connect(gw.port);
  try {
    const greeting = await c.read();
    if (greeting && greeting.code >= 400) return { stage: 'connect', reply: greeting };
    const helo = await c.cmd(`EHLO ${env.helo ?? 'client.example.net'}`);
    if (helo && helo.code >= 400) return { stage: 'helo', reply: helo };
    const mail = await c.cmd(`MAIL FROM:<${env.from ?? ''}>`);
    if (mail && mail.code >= 400) return { stage: 'mail', reply: mail };
    let last: Reply | undefined;
    let accepted = 0;
    for (const t of env.to ?? []) {
      const r = await c.cmd(`RCPT TO:<${t}>`);
      if (r && r.code < 400) accepted++;
      else last = r;
    }
    if (accepted === 0) return { stage: 'rcpt', reply: last };
    await c.cmd('DATA');
    c.write(raw);
    c.write(raw.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n');
    return { stage: 'data', reply: await c.read(30_000) };
  } finally {
    c.close();
  }
}

for (const name of readdirSync(corpus)
  .filter((n) => n.endsWith('.eml'))
  .sort()) {
  test(`same verdict through rules test and SMTP: ${name}`, async () => {
    const path = join(corpus, name);
    const env = JSON.parse(readFileSync(path.replace(/\.eml$/, '.json'), 'utf8')) as Sidecar;
    const raw = readFileSync(path);
    const cli = spawnSync(process.execPath, [main, 'rules', 'test', path, '--config', configFile, '--offline', '--json'], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    const offline = JSON.parse(cli.stdout) as {
      action: string;
      stage: string;
      reply: { code: number; enhanced: string; text: string } | null;
      envelope: Sidecar;
    };

    // The same envelope through SMTP; the sidecar's facts (and its client address) injected in the core.
    const overrides = new Map<string, FactValue>(Object.entries(env.facts ?? {}));
    overrides.set('client.ip', offline.envelope.ip ?? '192.0.2.1');
    gw.runtime.overrides = overrides;
    const smtp = await viaSmtp(raw, { ...env, from: offline.envelope.from, to: offline.envelope.to ?? [] });
    delete gw.runtime.overrides;

    assert.equal(smtp.stage, offline.stage, `stage: smtp ${smtp.stage} ${smtp.reply?.code} ${smtp.reply?.text}, rules test ${offline.stage}`);
    if (offline.reply) {
      assert.equal(smtp.reply?.code, offline.reply.code);
      assert.equal(smtp.reply?.text, `${offline.reply.enhanced} ${offline.reply.text}`);
    } else {
      assert.equal(smtp.reply?.code, 250, smtp.reply?.text);
      // Accepted mail gets the backend's answer; quarantined mail mailgate's own (with its queue id).
      if (offline.action === 'quarantine') assert.match(smtp.reply?.text ?? '', /^2\.0\.0 Message accepted \(/);
      else assert.match(smtp.reply?.text ?? '', /^2\.0\.0 Ok: queued as /);
    }
  });
}
