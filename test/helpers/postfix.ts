// A private Postfix instance for tests: its own config, queue and data directories under a temp
// dir, on a free loopback port, using the machine's Postfix binaries but none of /etc/postfix.
// Several can run side by side (one per test run, or one per test that needs special settings,
// e.g. a milter host). Needs root (Postfix's master runs as root and drops to `postfix`).
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PostfixOptions {
  /** smtpd port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** Users of the virtual domain(s), delivered to Maildirs `<mailBase>/<user>/`. */
  users?: readonly string[];
  /** Virtual mailbox domains (default example.test). */
  domains?: readonly string[];
  /** Extra or overriding main.cf settings, e.g. { smtpd_milters: 'inet:127.0.0.1:9999' }. */
  main?: Record<string, string>;
  /** Extra master.cf lines (e.g. a second smtpd on another port). */
  master?: readonly string[];
  /** Parent for the instance directory (default the OS temp dir). */
  baseDir?: string;
}

export interface PostfixInstance {
  readonly port: number;
  /** The instance's config directory: pass as `-c DIR` or MAIL_CONFIG to postqueue/postsuper. */
  readonly confDir: string;
  readonly mailBase: string;
  readonly logFile: string;
  readonly dir: string;
  /** Environment that points Postfix's command-line tools at this instance. */
  readonly env: NodeJS.ProcessEnv;
  /** `postqueue -j` as parsed JSON lines (queued messages). */
  queue(): Array<Record<string, unknown>>;
  /** Runs a Postfix tool (postqueue, postsuper, postcat …) against this instance. */
  tool(cmd: string, args: readonly string[]): string;
  start(): Promise<void>;
  /** Stops the instance (a "backend down" fault); start() brings it back. */
  stopDaemon(): void;
  /** Stops and removes everything. */
  destroy(): void;
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Whether this machine can run a private Postfix (binaries present, running as root). */
export function postfixAvailable(): { ok: true } | { ok: false; why: string } {
  if (!existsSync('/usr/sbin/postfix')) return { ok: false, why: 'postfix is not installed: apt-get install -y postfix' };
  if (process.getuid?.() !== 0) return { ok: false, why: 'a private Postfix instance needs root' };
  return { ok: true };
}

function userIds(name: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
  return { uid, gid };
}

const TOOL_TIMEOUT_MS = 60_000;

export async function startPostfix(opts: PostfixOptions = {}): Promise<PostfixInstance> {
  const avail = postfixAvailable();
  if (!avail.ok) throw new Error(avail.why);
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(opts.baseDir ?? tmpdir(), 'mailgate-postfix-'));
  const confDir = join(dir, 'etc');
  const spool = join(dir, 'spool');
  const data = join(dir, 'data');
  const mailBase = join(dir, 'mail');
  const logFile = join(dir, 'postfix.log');
  for (const d of [confDir, spool, data, mailBase]) mkdirSync(d, { recursive: true });
  const pf = userIds('postfix');
  const nobody = userIds('nobody');
  // data_directory must belong to postfix, else master.lock: Permission denied.
  chownSync(data, pf.uid, pf.gid);
  chownSync(mailBase, nobody.uid, nobody.gid);
  execFileSync('chmod', ['755', dir, mailBase]);
  const domains = opts.domains ?? ['example.test'];
  const users = opts.users ?? ['alice', 'bob', 'carol'];
  const main: Record<string, string> = {
    compatibility_level: '3.6',
    myhostname: 'backend.example.test',
    mydestination: '',
    inet_interfaces: 'loopback-only',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    queue_directory: spool,
    data_directory: data,
    virtual_mailbox_domains: domains.join(', '),
    virtual_mailbox_maps: `hash:${confDir}/vmailbox`,
    virtual_mailbox_base: mailBase,
    virtual_uid_maps: `static:${nobody.uid}`,
    virtual_gid_maps: `static:${nobody.gid}`,
    smtpd_reject_unlisted_recipient: 'yes',
    // Lenient about bare line endings, like many deployed MTAs: smuggling through mailgate would show.
    smtpd_forbid_bare_newline: 'no',
    smtpd_authorized_xclient_hosts: '127.0.0.0/8',
    message_size_limit: '104857600',
    virtual_mailbox_limit: '0',
    alias_maps: '',
    alias_database: '',
    maillog_file_prefixes: `/var, /dev/stdout, /tmp, ${dir}`,
    maillog_file: logFile,
    smtputf8_enable: 'yes',
    header_checks: `regexp:${confDir}/header_checks`,
    // Relayed mail for other domains must never leave this box in tests.
    default_transport: 'error:mailgate tests do not relay',
    relay_transport: 'error:mailgate tests do not relay',
    // Several instances share the machine: keep their queue managers from probing each other.
    shlib_directory: 'no',
    ...opts.main,
  };
  if (main.shlib_directory === 'no') delete main.shlib_directory;
  writeFileSync(
    join(confDir, 'main.cf'),
    Object.entries(main)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n') + '\n',
  );
  writeFileSync(join(confDir, 'vmailbox'), domains.flatMap((d) => users.map((u) => `${u}@${d} ${u}/`)).join('\n') + '\n');
  // A header that makes the backend reject at end of DATA: tests "backend rejects DATA".
  writeFileSync(join(confDir, 'header_checks'), '/^X-Backend-Reject:/ REJECT 5.7.1 rejected by backend header check\n');
  const env = { ...process.env, MAIL_CONFIG: confDir };
  execFileSync('postmap', ['-c', confDir, join(confDir, 'vmailbox')], { env, timeout: TOOL_TIMEOUT_MS });
  const master = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    ...(opts.master ?? []),
    'pickup    unix  n       -       n       60      1       pickup',
    'cleanup   unix  n       -       n       -       0       cleanup',
    'qmgr      unix  n       -       n       300     1       qmgr',
    'tlsmgr    unix  -       -       n       1000?   1       tlsmgr',
    'rewrite   unix  -       -       n       -       -       trivial-rewrite',
    'bounce    unix  -       -       n       -       0       bounce',
    'defer     unix  -       -       n       -       0       bounce',
    'trace     unix  -       -       n       -       0       bounce',
    'verify    unix  -       -       n       -       1       verify',
    'flush     unix  n       -       n       1000?   0       flush',
    'proxymap  unix  -       -       n       -       -       proxymap',
    'proxywrite unix -       -       n       -       1       proxymap',
    'smtp      unix  -       -       n       -       -       smtp',
    'relay     unix  -       -       n       -       -       smtp',
    'showq     unix  n       -       n       -       -       showq',
    'error     unix  -       -       n       -       -       error',
    'retry     unix  -       -       n       -       -       error',
    'discard   unix  -       -       n       -       -       discard',
    'local     unix  -       n       n       -       -       local',
    'virtual   unix  -       n       n       -       -       virtual',
    'lmtp      unix  -       -       n       -       -       lmtp',
    'anvil     unix  -       -       n       -       1       anvil',
    'scache    unix  -       -       n       -       1       scache',
    'postlog   unix-dgram n  -       n       -       1       postlogd',
  ];
  writeFileSync(join(confDir, 'master.cf'), master.join('\n') + '\n');
  // A bound on every Postfix tool: a synchronous call that never returns would block the test
  // file's event loop, where no test timeout can fire (test/helpers/run-watchdog.ts).
  const tool = (cmd: string, args: readonly string[]) =>
    execFileSync(cmd, ['-c', confDir, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: TOOL_TIMEOUT_MS }).toString();
  const inst: PostfixInstance = {
    port,
    confDir,
    mailBase,
    logFile,
    dir,
    env,
    tool,
    queue() {
      const out = tool('postqueue', ['-j']).trim();
      return out === '' ? [] : out.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async start() {
      tool('postfix', ['check']);
      tool('postfix', ['start']);
      await waitListening(port, 10_000, logFile);
    },
    stopDaemon() {
      try {
        tool('postfix', ['stop']);
      } catch {
        /* already stopped */
      }
      waitClosed(port);
    },
    destroy() {
      inst.stopDaemon();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await inst.start();
  return inst;
}

async function waitListening(port: number, ms: number, logFile: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) {
      let log = '';
      try {
        log = execFileSync('tail', ['-20', logFile]).toString();
      } catch {
        /* no log yet */
      }
      throw new Error(`private postfix did not come up on 127.0.0.1:${port}\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function waitClosed(port: number): void {
  // postfix stop returns before master has closed its listening socket.
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore', timeout: 5000 });
    } catch {
      return;
    }
    execFileSync('sleep', ['0.1']);
  }
}
