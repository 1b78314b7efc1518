// Milter rows: smtp-source → a private Postfix (test/helpers/postfix.ts: its own config and queue,
// relaying example.test to the bench's smtp-sink) alone, with mailgate as its milter (the shipped
// rules and checks, `listen: []`), and with Rspamd's proxy worker in milter mode (Debian rspamd,
// stock rules, self-scan, DNS → the bench's stub). Postfix queues: msg/s is what Postfix accepted,
// CPU per message includes its delivery to the sink and the milter's process tree.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../../test/helpers/postfix.ts';
import { mailgateAvailable, startMailgate } from '../lib/mailgate.ts';
import { freePort, startService, waitTcp } from '../lib/service.ts';
import type { BenchContext, Gateway, TargetSpec } from '../lib/types.ts';

async function postfixFor(ctx: BenchContext, milter: string | null): Promise<{ pf: PostfixInstance; master: number }> {
  const pf = await startPostfix({
    baseDir: ctx.dirs.work,
    domains: ['mailbox.invalid'],
    main: {
      myhostname: 'postfix.bench.test',
      relay_domains: 'example.test',
      relay_transport: `smtp:[127.0.0.1]:${ctx.sink.port}`,
      smtp_dns_support_level: 'disabled',
      smtpd_peername_lookup: 'no',
      // every bench client is 127.0.0.1: no per-client caps (anvil)
      smtpd_client_connection_count_limit: '0',
      ...(milter ? { smtpd_milters: milter, milter_default_action: 'tempfail', milter_protocol: '6' } : {}),
    },
  });
  const pidFile = join(pf.dir, 'spool', 'pid', 'master.pid');
  const master = Number(readFileSync(pidFile, 'utf8').trim());
  return { pf, master };
}

function postfixGateway(name: string, pf: PostfixInstance, master: number, extra: Gateway | null): Gateway {
  return {
    name,
    port: pf.port,
    pid: master,
    workers: null,
    ...(extra ? { extraPids: [extra.pid] } : {}),
    stop: async () => {
      pf.destroy();
      await extra?.stop();
    },
    logTail: () => (existsSync(pf.logFile) ? execFileSync('tail', ['-5', pf.logFile]).toString() : ''),
  };
}

const postfixMissing = (): string | null => {
  const a = postfixAvailable();
  return a.ok ? null : a.why;
};

export const postfixTarget: TargetSpec = {
  id: 'postfix',
  target: 'postfix',
  label: 'Postfix alone (private instance, relays to the sink)',
  latency: false,
  missing: postfixMissing,
  start: async (ctx) => {
    const { pf, master } = await postfixFor(ctx, null);
    return postfixGateway('postfix', pf, master, null);
  },
};

export const postfixMailgateTarget: TargetSpec = {
  id: 'postfix-mailgate',
  target: 'postfix+mailgate',
  label: 'Postfix + mailgate as milter (shipped config)',
  latency: false,
  missing: (ctx) => postfixMissing() ?? mailgateAvailable(ctx.mailgateRoot),
  start: async (ctx, tag) => {
    const milterPort = await freePort();
    const mg = await startMailgate(ctx, ctx.mailgateRoot, { workers: 1, tag, milterPort });
    try {
      const { pf, master } = await postfixFor(ctx, `inet:127.0.0.1:${milterPort}`);
      return postfixGateway('postfix+mailgate', pf, master, mg);
    } catch (e) {
      await mg.stop();
      throw e;
    }
  },
};

/** A private rspamd (Debian's stock rules, own local.d/override.d, db, run and log dirs). */
async function startRspamd(ctx: BenchContext, tag: string): Promise<{ gw: Gateway; milterPort: number }> {
  const dir = join(ctx.dirs.work, 'rspamd');
  const etc = join(dir, 'etc');
  for (const d of ['local.d', 'override.d']) mkdirSync(join(etc, d), { recursive: true });
  for (const d of ['db', 'run', 'log']) {
    mkdirSync(join(dir, d), { recursive: true });
    execFileSync('chown', ['_rspamd:_rspamd', join(dir, d)]);
  }
  const [normal, controller, proxy] = [await freePort(), await freePort(), await freePort()];
  const w = (f: string, s: string): void => writeFileSync(join(etc, f), s);
  w('override.d/worker-normal.inc', `bind_socket = "127.0.0.1:${normal}";\ncount = 1;\n`);
  w('override.d/worker-controller.inc', `bind_socket = "127.0.0.1:${controller}";\ncount = 1;\n`);
  w(
    'override.d/worker-proxy.inc',
    `bind_socket = "127.0.0.1:${proxy}";\nmilter = yes;\ntimeout = 120s;\ncount = 1;\nupstream "local" { default = yes; self_scan = yes; }\n`,
  );
  w('local.d/options.inc', `dns { nameserver = ["127.0.0.1:${ctx.dns.port}"]; timeout = 1s; retransmits = 1; }\n`);
  w('local.d/logging.inc', 'level = "warning";\ntype = "console";\n');
  const svc = startService(
    `rspamd-${tag}`,
    'rspamd',
    [
      '-f',
      '-u',
      '_rspamd',
      '-g',
      '_rspamd',
      '-c',
      '/etc/rspamd/rspamd.conf',
      '--var',
      `LOCAL_CONFDIR=${etc}`,
      '--var',
      `DBDIR=${join(dir, 'db')}`,
      '--var',
      `RUNDIR=${join(dir, 'run')}`,
      '--var',
      `LOGDIR=${join(dir, 'log')}`,
    ],
    { logDir: ctx.dirs.logs },
  );
  // the first start compiles the regexp cache (kept in db/ afterwards)
  await waitTcp(proxy, 180_000, svc);
  await new Promise((r) => setTimeout(r, 2000));
  return { gw: { name: 'rspamd', port: proxy, pid: svc.pid, workers: null, stop: () => svc.stop(), logTail: () => svc.logTail() }, milterPort: proxy };
}

export const postfixRspamdTarget: TargetSpec = {
  id: 'postfix-rspamd',
  target: 'postfix+rspamd',
  label: 'Postfix + Rspamd 3.4 proxy worker as milter (stock rules, self-scan)',
  latency: false,
  missing: () => postfixMissing() ?? (existsSync('/usr/bin/rspamd') ? null : 'rspamd is not installed (apt-get install rspamd)'),
  start: async (ctx, tag) => {
    const { gw, milterPort } = await startRspamd(ctx, tag);
    try {
      const { pf, master } = await postfixFor(ctx, `inet:127.0.0.1:${milterPort}`);
      return postfixGateway('postfix+rspamd', pf, master, gw);
    } catch (e) {
      await gw.stop();
      throw e;
    }
  },
};
