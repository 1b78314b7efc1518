// `mailgate quarantine list|show|release|delete|purge|reconcile|digest|hash-password`: the
// postmaster's view of the quarantine, in the style of postsuper and pmgqm. Unknown flags are
// errors; output is an aligned table with a header, or JSON with --json.
import { parseDuration } from '../config/durations.ts';
import type { Config } from '../config/schema.ts';
import { QuarantineStore } from '../delivery/quarantine/store.ts';
import type { IndexRow, ListFilter } from '../delivery/quarantine/entry.ts';
import { releaseEntry } from '../delivery/release.ts';
import { backendFromConfig, type Backend } from '../delivery/backend.ts';
import { formatTable } from './table.ts';

export const HELP_QUARANTINE = `NAME
    mailgate quarantine - review, release and delete quarantined messages

SYNOPSIS
    mailgate quarantine list [--rcpt ADDR|@DOMAIN] [--from ADDR|@DOMAIN] [--rule NAME]
                             [--reason TEXT] [--since WHEN] [--until WHEN]
                             [--min-score N] [--max-score N] [--status held|released|all]
                             [--limit N] [--offset N] [--json]
    mailgate quarantine show ID [--raw] [--json]
    mailgate quarantine release ID... [--to ADDR]... [--by NAME] [--json]
    mailgate quarantine delete ID...
    mailgate quarantine purge --older-than AGE
    mailgate quarantine reconcile
    mailgate quarantine digest [--dry-run] [--json]
    mailgate quarantine hash-password          (reads the password from stdin)

    Every command takes -c, --config FILE (default $MAILGATE_CONFIG, else ./mailgate.yaml,
    else /etc/mailgate/mailgate.yaml).

DESCRIPTION
    list     Entries from the index, newest first (no message file is read). Columns: ID,
             RECEIVED, FROM, TO, SCORE, STATUS, REASON. Filters combine with AND. WHEN is
             an ISO date/time (2026-01-31, 2026-01-31T12:00:00Z) or an age (2h, 7d).
             --status defaults to held (not yet released). --limit defaults to 100.
    show     The entry's envelope, client, TLS, authentication results, rules, score and
             the message header; --raw prints the stored message bytes exactly.
    release  Re-injects the stored bytes through the backend with the original envelope,
             or to the --to recipients (repeatable), adding one X-Mailgate-Released
             header. Prints the backend's reply. A second release of the same entry says
             "already released" with who and when, and delivers nothing.
    delete   Removes entries (index row, then files).
    purge    Deletes every entry older than AGE (e.g. 30d), released or not.
    reconcile  Re-reads the quarantine directory: adds complete entries the index lacks,
             drops rows whose files are gone, removes what an interrupted write left.
             'serve' does this at start.
    digest   Sends the per-recipient digests now (quarantine.digest in the config);
             --dry-run prints who would get what without sending.
    hash-password  Prints an scrypt hash for admin.auth.users[].password.

EXIT STATUS
    0 success (a repeated release counts), 1 usage or configuration error, 2 an entry
    was not found or a release failed.

EXAMPLES
    mailgate quarantine list --rcpt @example.test --since 1d
    mailgate quarantine release 1A2B3C4D5E --to postmaster@example.test
    mailgate quarantine purge --older-than 30d
`;

type Spec = Record<string, 'value' | 'flag' | 'multi'>;

export class UsageError extends Error {}

/** Strict option parsing: every option must be in `spec`; `--opt=value` and `--opt value`. */
export function parseArgs(args: readonly string[], spec: Spec): { opts: Map<string, string[]>; pos: string[] } {
  const opts = new Map<string, string[]>();
  const pos: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') {
      pos.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      pos.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown option ${name}`);
    let v: string;
    if (kind === 'flag') {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      v = '';
    } else if (eq > 0) v = a.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith('-') && next.length > 1)) throw new UsageError(`${name} needs a value`);
      v = next;
      i++;
    }
    const list = opts.get(name) ?? [];
    if (kind !== 'multi' && list.length) throw new UsageError(`${name} given twice`);
    list.push(v);
    opts.set(name, list);
  }
  return { opts, pos };
}

function one(o: Map<string, string[]>, name: string): string | undefined {
  return o.get(name)?.[0];
}

/** An ISO date/time, or an age like `7d` meaning that long before now. */
export function parseWhen(v: string, now = Date.now()): string {
  if (v.length > 64) throw new UsageError('a date or age is at most 64 characters');
  const age = parseDuration(v);
  if (age !== undefined && !v.includes('-')) return new Date(now - age).toISOString();
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new UsageError(`expected a date (2026-01-31, 2026-01-31T12:00:00Z) or an age (7d), got ${JSON.stringify(v)}`);
  return new Date(t).toISOString();
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`${name}: expected a number, got ${JSON.stringify(v)}`);
  return n;
}

/** Where a release delivers: the configured backend (a milter-only gateway has none to release to). */
export function makeBackend(config: Config): Backend {
  const b = backendFromConfig(config);
  if (!b) throw new UsageError("release needs a backend: this config has no backend: (milter only); release from Postfix's hold queue with postsuper -H");
  return b;
}

function statusOf(r: IndexRow): string {
  return r.releasedAt ? 'released' : 'held';
}

interface Io {
  out: (s: string | Buffer) => void;
  err: (s: string) => void;
  stdin: () => Promise<string>;
}

const COMMON: Spec = { '-c': 'value', '--config': 'value', '-h': 'flag', '--help': 'flag' };

/** Runs a quarantine subcommand; returns the exit status. `load` reads the config file. */
export async function runQuarantineCommand(argv: readonly string[], load: (file: string | undefined) => Config, io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    io.out(HELP_QUARANTINE);
    return 0;
  }
  const specs: Record<string, Spec> = {
    list: {
      '--rcpt': 'value',
      '--from': 'value',
      '--rule': 'value',
      '--reason': 'value',
      '--since': 'value',
      '--until': 'value',
      '--min-score': 'value',
      '--max-score': 'value',
      '--status': 'value',
      '--limit': 'value',
      '--offset': 'value',
      '--json': 'flag',
    },
    show: { '--raw': 'flag', '--json': 'flag' },
    release: { '--to': 'multi', '--by': 'value', '--json': 'flag' },
    delete: { '--json': 'flag' },
    purge: { '--older-than': 'value', '--json': 'flag' },
    reconcile: { '--json': 'flag' },
    digest: { '--dry-run': 'flag', '--json': 'flag' },
    'hash-password': {},
  };
  const spec = specs[sub];
  if (!spec) throw new UsageError(`quarantine: unknown subcommand ${sub} (list, show, release, delete, purge, reconcile, digest, hash-password)`);
  const { opts, pos } = parseArgs(rest, { ...COMMON, ...spec });
  if (opts.has('-h') || opts.has('--help')) {
    io.out(HELP_QUARANTINE);
    return 0;
  }
  const json = opts.has('--json');
  if (sub === 'hash-password') {
    const { hashPassword } = await import('../admin/password.ts');
    const pw = (await io.stdin()).replace(/\r?\n$/, '');
    if (!pw) throw new UsageError('hash-password: give the password on stdin');
    io.out(`${await hashPassword(pw)}\n`);
    return 0;
  }
  const config = load(one(opts, '--config') ?? one(opts, '-c'));
  const store = new QuarantineStore({ config: config.quarantine });
  try {
    switch (sub) {
      case 'list': {
        if (pos.length) throw new UsageError(`list: unexpected argument ${pos[0]}`);
        const f: ListFilter = {};
        const set = <K extends keyof ListFilter>(k: K, v: ListFilter[K] | undefined) => {
          if (v !== undefined) f[k] = v;
        };
        set('rcpt', one(opts, '--rcpt'));
        set('from', one(opts, '--from'));
        set('rule', one(opts, '--rule'));
        set('reason', one(opts, '--reason'));
        const since = one(opts, '--since');
        if (since) f.since = parseWhen(since);
        const until = one(opts, '--until');
        if (until) f.until = parseWhen(until);
        set('minScore', num(one(opts, '--min-score'), '--min-score'));
        set('maxScore', num(one(opts, '--max-score'), '--max-score'));
        const status = one(opts, '--status');
        if (status !== undefined) {
          if (status !== 'held' && status !== 'released' && status !== 'all') throw new UsageError('--status: expected held, released or all');
          f.status = status;
        }
        set('limit', num(one(opts, '--limit'), '--limit'));
        set('offset', num(one(opts, '--offset'), '--offset'));
        const { rows, total } = await store.list(f);
        if (json) io.out(JSON.stringify({ total, rows }, null, 2) + '\n');
        else {
          io.out(
            formatTable(
              ['ID', 'RECEIVED', 'FROM', 'TO', 'SCORE', 'STATUS', 'REASON'],
              rows.map((r) => [r.id, r.received.slice(0, 19).replace('T', ' '), `<${r.from}>`, r.rcpts.join(','), r.score.toFixed(1), statusOf(r), r.reason]),
            ),
          );
          io.err(`${rows.length} of ${total} entries\n`);
        }
        return 0;
      }
      case 'show': {
        const id = pos[0];
        if (!id || pos.length > 1) throw new UsageError('show: expected one ID');
        const e = await store.get(id);
        if (!e) {
          io.err(`mailgate: quarantine: no message ${id}\n`);
          return 2;
        }
        const bytes = await store.bytes(e.row);
        if (opts.has('--raw')) io.out(bytes);
        else if (json) io.out(JSON.stringify({ ...e.row, meta: e.meta }, null, 2) + '\n');
        else io.out(describe(e.row, e.meta, bytes));
        return 0;
      }
      case 'release': {
        if (pos.length === 0) throw new UsageError('release: expected one or more IDs');
        const backend = makeBackend(config);
        const by = one(opts, '--by') ?? `cli:${process.env.SUDO_USER ?? process.env.USER ?? 'unknown'}`;
        const to = opts.get('--to');
        let status = 0;
        const results = [];
        try {
          for (const id of pos) {
            const r = await releaseEntry(store, backend, id, { by, ...(to ? { to } : {}) });
            results.push(r);
            if (r.status === 'failed' || r.status === 'missing' || r.status === 'busy') status = 2;
            if (json) continue;
            if (r.status === 'released') io.out(`${id}: released by ${by}: backend replied ${r.reply}\n`);
            else if (r.status === 'already') io.out(`${id}: already released at ${r.releasedAt} by ${r.releasedBy} (backend replied ${r.reply})\n`);
            else if (r.status === 'busy') io.out(`${id}: a release is in progress elsewhere\n`);
            else if (r.status === 'missing') io.err(`mailgate: quarantine: no message ${id}\n`);
            else io.out(`${id}: release failed: ${r.reply}${r.rcpts ? ` (${r.rcpts.map((x) => `${x.rcpt}: ${x.reply}`).join('; ')})` : ''}\n`);
          }
        } finally {
          backend.close();
        }
        if (json) io.out(JSON.stringify(results, null, 2) + '\n');
        return status;
      }
      case 'delete': {
        if (pos.length === 0) throw new UsageError('delete: expected one or more IDs');
        const done = await store.delete(pos, `cli:${process.env.USER ?? 'unknown'}`);
        const missing = pos.filter((id) => !done.includes(id));
        if (json) io.out(JSON.stringify({ deleted: done, missing }) + '\n');
        else {
          for (const id of done) io.out(`deleted ${id}\n`);
          for (const id of missing) io.err(`mailgate: quarantine: no message ${id}\n`);
        }
        return missing.length ? 2 : 0;
      }
      case 'purge': {
        if (pos.length) throw new UsageError(`purge: unexpected argument ${pos[0]}`);
        const age = one(opts, '--older-than');
        const ms = age === undefined ? undefined : parseDuration(age);
        if (ms === undefined) throw new UsageError('purge: --older-than AGE is required (e.g. 30d)');
        const n = await store.purge(ms);
        io.out(json ? JSON.stringify({ purged: n }) + '\n' : `purged ${n} entries older than ${age}\n`);
        return 0;
      }
      case 'reconcile': {
        const r = await store.reconcile();
        io.out(json ? JSON.stringify(r) + '\n' : `added ${r.added}, removed ${r.removed} index rows; cleaned ${r.cleaned} partial files\n`);
        return 0;
      }
      case 'digest': {
        const { sendDigests } = await import('../delivery/quarantine/digest.ts');
        const backend = makeBackend(config);
        try {
          const sent = await sendDigests({ store, backend, config, dryRun: opts.has('--dry-run') });
          if (json) io.out(JSON.stringify(sent, null, 2) + '\n');
          else
            io.out(
              formatTable(
                ['RECIPIENT', 'MESSAGES', 'RESULT'],
                sent.map((s) => [s.rcpt, String(s.count), s.result]),
              ),
            );
          return sent.some((s) => s.result.startsWith('failed')) ? 2 : 0;
        } finally {
          backend.close();
        }
      }
    }
    return 0;
  } finally {
    await store.close();
  }
}

/** The human-readable view of one entry: summary, then the message's header block. */
function describe(row: IndexRow, meta: import('../delivery/quarantine/file-layout.ts').StoredMeta, bytes: Buffer): string {
  const end = bytes.indexOf('\r\n\r\n');
  const header = bytes
    .subarray(0, end >= 0 ? end : Math.min(bytes.length, 65536))
    .toString('latin1')
    .replace(/\r\n/g, '\n');
  const lines: Array<[string, string]> = [
    ['ID', row.id],
    ['Received', row.received],
    ['Client', `${meta.client.ip} (HELO ${meta.client.helo}${meta.client.rdns ? `, rDNS ${meta.client.rdns}` : ''})`],
    ['TLS', meta.tls ? `${meta.tls.protocol ?? ''} ${meta.tls.cipher ?? ''}`.trim() : 'none'],
    ['From', `<${meta.from}>`],
    ['To', meta.rcpts.join(', ')],
    ['Size', `${meta.bytes} bytes`],
    ['Score', String(meta.score)],
    ['Reason', meta.reason],
    ['Rules', meta.rules.join(', ') || '-'],
    [
      'Auth',
      meta.auth
        ? Object.entries(meta.auth)
            .map(([k, v]) => `${k}=${v}`)
            .join('; ')
        : '-',
    ],
    ['Status', row.releasedAt ? `released ${row.releasedAt} by ${row.releasedBy} (${row.releaseReply})` : 'held'],
  ];
  const w = Math.max(...lines.map(([k]) => k.length)) + 1;
  return lines.map(([k, v]) => `${`${k}:`.padEnd(w)} ${v}`).join('\n') + '\n\n' + header + '\n';
}
