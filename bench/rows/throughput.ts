// Throughput and latency rows: the limit (smtp-source → smtp-sink), mailgate relay-only and
// Haraka relay-only (1 and 2 workers), at each session count. The machine is noisy, so the
// targets' runs are interleaved (run 1 of every target, then run 2, ...) with every gateway
// started fresh per session count: ratios then compare figures taken minutes, not hours, apart.
import { join } from 'node:path';
import { measureAddedLatency, sizeRuns, oneRun, summarise, runSize } from '../lib/measure.ts';
import { startHaraka } from '../lib/haraka.ts';
import { mailgateAvailable, mailgateRoot, startMailgate, workerCount } from '../lib/mailgate.ts';
import type { BenchContext, Gateway, Row, RowProducer, RunSample, TargetSpec, ThroughputRow } from '../lib/types.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { startClamd } from '../../test/helpers/content-fixtures.ts';
import { startService, waitSmtp } from '../lib/service.ts';
import { postfixMailgateTarget, postfixRspamdTarget, postfixTarget } from './milter.ts';

/** The Node latency client's own ceiling: above this it would measure itself, not the server. */
const MAX_LATENCY_RATE = 1000;

const limitTarget: TargetSpec = {
  id: 'limit',
  target: 'limit',
  label: 'limit: smtp-source → smtp-sink',
  latency: false,
  missing: () => null,
  start: async (ctx) => ({
    name: 'limit',
    port: ctx.sink.port,
    pid: ctx.sink.svc.pid,
    workers: null,
    stop: async () => undefined,
    logTail: () => '',
  }),
};

function mailgateTarget(id: string, workers: number, latency: boolean, rev?: string, pooled = true): TargetSpec {
  const root = (ctx: BenchContext): string => (rev ? mailgateRoot(ctx, rev) : ctx.mailgateRoot);
  return {
    id,
    target: rev ? `mailgate@${rev}` : 'mailgate',
    label: `mailgate${rev ? `@${rev}` : ''}, shipped config${workers > 1 ? `, workers: ${workers}` : ''}${pooled ? '' : ', backend pool_size: 0'}`,
    latency,
    missing: (ctx) => mailgateAvailable(root(ctx)),
    start: (ctx, tag, profile) =>
      startMailgate(ctx, root(ctx), {
        workers,
        tag,
        ...(pooled ? {} : { overrides: { backend: { pool_size: 0 } } }),
        ...(profile ? { cpuProfDir: join(ctx.dirs.work, 'prof', tag) } : {}),
      }),
    ...(workers > 1 ? { workers } : {}),
  };
}

/** Every check mailgate ships (catalogue names): `checks.disabled` with all of them is the relay leg. */
export const ALL_CHECKS = [
  'spf',
  'dkim-arc-dmarc',
  'fcrdns',
  'helo-sanity',
  'dnsbl',
  'concurrency',
  'ratelimit',
  'greylist',
  'batv',
  'backscatter',
  'mime-walk',
  'attachments',
  'urls',
  'antivirus',
  'rspamd',
  'spamassassin',
  'body-text',
];
/** The content checks that run in the shipped config (the MIME walk and what reads it). */
export const CONTENT_CHECKS = ['mime-walk', 'attachments', 'urls', 'body-text'];

/** mailgate with config keys merged over the shipped config (one more row of the same run). */
function mailgateConfigTarget(id: string, label: string, overrides: Record<string, unknown>, sessions?: number[], rev?: string): TargetSpec {
  const root = (ctx: BenchContext): string => (rev ? mailgateRoot(ctx, rev) : ctx.mailgateRoot);
  return {
    id,
    target: rev ? `${id}@${rev}` : id,
    label,
    latency: false,
    missing: (ctx) => mailgateAvailable(root(ctx)),
    start: (ctx, tag, profile) =>
      startMailgate(ctx, root(ctx), { workers: 1, tag, overrides, ...(profile ? { cpuProfDir: join(ctx.dirs.work, 'prof', tag) } : {}) }),
    ...(sessions ? { sessions } : {}),
  };
}

/** mailgate with clamd (Debian clamav-daemon, the tiny signature db of ../shared) scanning every message. */
const clamdTarget: TargetSpec = {
  id: 'mailgate-clamd',
  target: 'mailgate-clamd',
  label: 'mailgate, shipped config + clamd (content.clamav, tiny signature db)',
  latency: false,
  missing: (ctx) => mailgateAvailable(ctx.mailgateRoot) ?? (existsSync('/usr/sbin/clamd') ? null : 'clamd is not installed (apt-get install clamav-daemon)'),
  start: async (ctx, tag) => {
    const clamd = await startClamd();
    try {
      const gw = await startMailgate(ctx, ctx.mailgateRoot, { workers: 1, tag, overrides: { content: { clamav: { enabled: true, socket: clamd.socket } } } });
      const pid = clamdPid(clamd.dir);
      return {
        ...gw,
        ...(pid ? { extraPids: [pid] } : {}),
        stop: async () => {
          await gw.stop();
          await clamd.stop();
        },
      };
    } catch (e) {
      await clamd.stop();
      throw e;
    }
  },
  sessions: [20],
};

/** bench/minimal-relay.ts: the relay leg's socket work in plain Node, no smtp-server (a reference). */
const minimalTarget: TargetSpec = {
  id: 'node-minimal',
  target: 'node-minimal',
  label: 'minimal Node relay (bench/minimal-relay.ts: no smtp-server, no checks)',
  latency: false,
  missing: () => null,
  start: async (ctx, tag) => {
    const svc = startService(`minimal-${tag}`, process.execPath, [join(ctx.dirs.bench, 'minimal-relay.ts'), String(ctx.sink.port)], { logDir: ctx.dirs.logs });
    const end = Date.now() + 10_000;
    let port = 0;
    while (!port && Date.now() < end) {
      port = Number(/^port (\d+)$/m.exec(readFileSync(svc.log, 'utf8'))?.[1] ?? 0);
      if (!port) await sleep(50);
    }
    if (!port) {
      await svc.stop();
      throw new Error(`minimal relay did not start: ${svc.logTail()}`);
    }
    await waitSmtp(port, 10_000, svc);
    return { name: 'node-minimal', port, pid: svc.pid, workers: 1, stop: () => svc.stop(), logTail: () => svc.logTail() };
  },
};

/** clamd's pid from its PidFile, if the template sets one, else from /proc by its config path. */
function clamdPid(dir: string): number | null {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.includes('clamd') && cmd.includes(dir)) return Number(p);
    } catch {
      /* gone */
    }
  }
  return null;
}

/** `--variant E`: mailgate with experiment E (bench/experiments/) as one more target of the same run. */
export function variantProducer(e: string): RowProducer {
  const t: TargetSpec = {
    id: `mailgate+${e}`,
    target: `mailgate+${e}`,
    label: `mailgate, default config + experiment ${e}`,
    latency: true,
    missing: (ctx) => mailgateAvailable(ctx.mailgateRoot),
    start: (ctx, tag, profile) =>
      startMailgate(ctx, ctx.mailgateRoot, { workers: 1, tag, experiments: [e], ...(profile ? { cpuProfDir: join(ctx.dirs.work, 'prof', tag) } : {}) }),
  };
  return {
    id: t.id,
    describe: `smtp-source → mailgate with experiment ${e} → smtp-sink (same run, A/B)`,
    interleave: t,
    run: (ctx) => runInterleaved(ctx, [t]),
  };
}

/** `--compare-rev REV`: mailgate at another revision (shipped config, or the relay leg) as one more target of the same run. */
export function compareRevProducer(rev: string, kind: 'shipped' | 'relay' = 'shipped'): RowProducer {
  const t =
    kind === 'relay'
      ? mailgateConfigTarget(
          'mailgate-relay-rev',
          `mailgate@${rev} relay only (checks.disabled: every check)`,
          { checks: { disabled: ALL_CHECKS } },
          undefined,
          rev,
        )
      : mailgateTarget('mailgate-rev', 1, true, rev);
  return {
    id: t.id,
    describe: `smtp-source → mailgate at ${rev} → smtp-sink (same run, for comparison)`,
    interleave: t,
    run: (ctx) => runInterleaved(ctx, [t]),
  };
}

function harakaTarget(id: string, nodes: number, latency: boolean, auth = false): TargetSpec {
  return {
    id,
    target: auth ? 'haraka+mailauth' : 'haraka',
    label: `Haraka ${auth ? '+ mailauth (SPF, DKIM, ARC, DMARC)' : 'relay only'}${nodes > 1 ? `, nodes=${nodes}` : ' (one process)'}`,
    latency,
    missing: () => null,
    start: (ctx, tag) => startHaraka(ctx, nodes, `-${tag}`, auth),
    ...(nodes > 1 ? { workers: nodes } : {}),
  };
}

export const throughputTargets: TargetSpec[] = [
  limitTarget,
  mailgateTarget('mailgate', 1, true),
  harakaTarget('haraka-auth', 0, false, true),
  mailgateConfigTarget('mailgate-relay', 'mailgate relay only (checks.disabled: every check)', { checks: { disabled: ALL_CHECKS } }),
  harakaTarget('haraka', 0, true),
  minimalTarget,
  mailgateConfigTarget(
    'mailgate-nocontent',
    'mailgate, shipped config minus content (checks.disabled: mime-walk, attachments, urls, body-text)',
    { checks: { disabled: CONTENT_CHECKS } },
    [20],
  ),
  clamdTarget,
  { ...postfixTarget, sessions: [20] },
  { ...postfixMailgateTarget, sessions: [20] },
  { ...postfixRspamdTarget, sessions: [20] },
  // mailgate pools greeted backend sessions unless it uses XCLIENT (a Postfix backend that
  // authorises it); then each client connection gets its own backend connection, as here
  mailgateTarget('mailgate-nopool', 1, false, undefined, false),
  mailgateTarget('mailgate-w2', 2, false),
  harakaTarget('haraka-w2', 2, false),
];

const describe: Record<string, string> = {
  'haraka-auth': 'smtp-source → Haraka + bench_mailauth (SPF, DKIM, ARC, DMARC) → smtp-sink',
  'mailgate-relay': 'smtp-source → mailgate with every check disabled (the relay leg) → smtp-sink',
  'mailgate-nocontent': 'smtp-source → mailgate, shipped config minus the MIME walk and content checks → smtp-sink',
  'node-minimal': 'smtp-source → a minimal Node relay (bench/minimal-relay.ts: no smtp-server, no checks) → smtp-sink',
  'mailgate-clamd': 'smtp-source → mailgate, shipped config + clamd → smtp-sink',
  postfix: "smtp-source → a private Postfix → smtp-sink (the milter rows' reference)",
  'postfix-mailgate': 'smtp-source → Postfix with mailgate as milter → smtp-sink',
  'postfix-rspamd': "smtp-source → Postfix with Rspamd's milter (proxy worker, self-scan) → smtp-sink",
  limit: 'smtp-source → smtp-sink directly (the physical limit)',
  mailgate: 'smtp-source → mailgate (shipped default config, 1 worker) → smtp-sink, and added latency at half load',
  haraka: `smtp-source → Haraka (one process) → smtp-sink, and added latency at half load`,
  'mailgate-w2': 'smtp-source → mailgate (workers: 2) → smtp-sink',
  'mailgate-nopool': 'smtp-source → mailgate (backend pool_size: 0: a backend connection per client, as with XCLIENT) → smtp-sink',
  'haraka-w2': 'smtp-source → Haraka (cluster, 2 workers) → smtp-sink',
};

/** One producer per target so --only can pick them; run.ts runs the selected ones together. */
export const throughputProducers: RowProducer[] = throughputTargets.map((t) => ({
  id: t.id,
  describe: describe[t.id] ?? t.label,
  interleave: t,
  run: (ctx) => runInterleaved(ctx, [t]),
}));

/**
 * The warm burst before each interleaved run: a tenth of the run, at least 5 messages a session
 * (BENCH_PRE_RUN_MSGS sets the count; 0 turns it off, as before 2026-12-02).
 */
export function preRunMsgs(sessions: number, runMsgs: number, env = process.env.BENCH_PRE_RUN_MSGS): number {
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new Error(`BENCH_PRE_RUN_MSGS: a whole number of messages (0 = none), not ${JSON.stringify(env)}`);
    return n;
  }
  return Math.max(5 * sessions, Math.round(runMsgs / 10));
}

interface Live {
  spec: TargetSpec;
  gw: Gateway;
  msgs: number;
  warmNotes: string[];
  runs: RunSample[];
}

/** Throughput of every spec at every session count, runs interleaved; then latency rows. */
export async function runInterleaved(ctx: BenchContext, specs: readonly TargetSpec[]): Promise<Row[]> {
  const rows: Row[] = [];
  const usable: TargetSpec[] = [];
  for (const s of specs) {
    const missing = s.missing(ctx);
    if (missing) rows.push({ kind: 'skipped', id: s.id, label: s.label, reason: missing });
    else usable.push(s);
  }
  const maxSessions = Math.max(...ctx.opts.sessions);
  preRunMsgs(1, 0); // a bad BENCH_PRE_RUN_MSGS stops the bench here, before any target starts
  for (const sessions of ctx.opts.sessions) {
    const here = usable.filter((s) => !s.sessions || s.sessions.includes(sessions));
    ctx.log(`-- ${sessions} session${sessions > 1 ? 's' : ''}: ${here.map((s) => s.id).join(', ')} (runs interleaved)`);
    const live: Live[] = [];
    try {
      for (const spec of here) {
        const id = `${spec.id}-s${sessions}`;
        let gw: Gateway;
        try {
          gw = await spec.start(ctx, id, ctx.opts.profile && sessions === maxSessions);
        } catch (e) {
          const msg = e instanceof Error ? e.message : String(e);
          ctx.log(`  ${id}: could not start: ${msg}`);
          rows.push({ kind: 'skipped', id, label: spec.label, reason: `could not start: ${msg.split('\n').slice(0, 3).join(' | ')}` });
          continue;
        }
        if (spec.workers !== undefined && workerCount(gw) < spec.workers) {
          rows.push({ kind: 'skipped', id, label: spec.label, reason: `asked for ${spec.workers} workers; ${workerCount(gw)} child processes run` });
          await gw.stop();
          continue;
        }
        const { msgs, notes } = await sizeRuns(ctx, gw, sessions, id);
        live.push({ spec, gw, msgs, warmNotes: notes, runs: [] });
      }
      for (let i = 0; i < ctx.opts.runs; i++) {
        for (const l of live) {
          await sleep(ctx.opts.quick ? 300 : 1000);
          // Unrecorded, right before the run: every target (peers too) sat idle through the others'
          // runs, 25–85 s, long enough for V8's memory reducer to give back a Node target's young
          // generation; the first second of a run then paid to grow it again (bench/HISTORY.md,
          // 2026-12-02). The runs measure a gateway under steady load.
          const warm = preRunMsgs(sessions, l.msgs);
          if (warm > 0) {
            await oneRun(ctx, l.gw, sessions, warm);
            await sleep(200);
          }
          const r = await oneRun(ctx, l.gw, sessions, l.msgs);
          ctx.log(
            `  ${`${l.spec.id}-s${sessions}`.padEnd(16)} run ${i + 1}: ${String(r.msgPerS).padStart(5)} msg/s, cpu ${r.cpuS}s (sink ${r.sinkCpuS}s, source ${r.sourceCpuS}s), machine ${r.machineBusyPct}% busy (others ${r.otherBusyPct}%)${r.problems.length ? `  PROBLEMS: ${r.problems.join('; ')}` : ''}`,
          );
          l.runs.push(r);
          if (r.wallS < ctx.opts.seconds / 2 || r.wallS > ctx.opts.seconds * 2) l.msgs = runSize(ctx, sessions, r.msgPerS);
        }
      }
      for (const l of live) rows.push(summarise(l.gw, { id: `${l.spec.id}-s${sessions}`, label: l.spec.label, sessions }, l.runs, l.warmNotes));
    } finally {
      for (const l of live) await l.gw.stop();
    }
  }
  for (const spec of usable.filter((s) => s.latency)) {
    const id = `${spec.id}-latency`;
    // An A/B target (--variant, --compare-rev) is measured at mailgate's rate, so both sides see the same load.
    const ab = spec.id.startsWith('mailgate+') || spec.id === 'mailgate-rev';
    const want = (ab ? halfLoad(rows, 'mailgate', maxSessions) : null) ?? halfLoad(rows, spec.id, maxSessions);
    if (want === null) {
      rows.push({ kind: 'skipped', id, label: spec.label, reason: 'no throughput figure to take half of' });
      continue;
    }
    const rate = Math.min(want, MAX_LATENCY_RATE);
    ctx.log(`${id}: ${rate} msg/s${rate < want ? ` (half load is ${want}; capped at the client's ceiling)` : ' (half of max)'}`);
    let gw: Gateway;
    try {
      gw = await spec.start(ctx, id, false);
    } catch (e) {
      rows.push({ kind: 'skipped', id, label: spec.label, reason: `could not start: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}` });
      continue;
    }
    try {
      const row = await measureAddedLatency(ctx, gw, id, spec.label, rate);
      if (rate < want) row.notes.push(`half load is ${want} msg/s; measured at ${rate} (client ceiling)`);
      rows.push(row);
    } finally {
      await gw.stop();
    }
  }
  return rows;
}

/** Half of the target's median throughput at the highest session count of this run. */
function halfLoad(rows: readonly Row[], id: string, sessions: number): number | null {
  const r = rows.find((x): x is ThroughputRow => x.kind === 'throughput' && x.id === `${id}-s${sessions}`);
  return r?.msgPerS ? Math.round(r.msgPerS / 2) : null;
}
