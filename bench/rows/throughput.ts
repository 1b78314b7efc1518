// Throughput and latency rows: the limit (smtp-source → smtp-sink), mailgate relay-only and
// Haraka relay-only, each at the configured session counts, plus the 2-worker variants.
import { join } from 'node:path';
import { measureAddedLatency, measureThroughput, type Target } from '../lib/measure.ts';
import { startHaraka, type Gateway } from '../lib/haraka.ts';
import { mailgateAvailable, startMailgate, workerCount } from '../lib/mailgate.ts';
import type { BenchContext, Row, RowProducer, ThroughputRow } from '../lib/types.ts';

/** The Node client's own ceiling: above this it measures itself, not the server. */
const MAX_LATENCY_RATE = 1000;

export const limitRows: RowProducer = {
  id: 'limit',
  describe: 'smtp-source → smtp-sink directly (the physical limit)',
  async run(ctx) {
    const t: Target = { name: 'limit', port: ctx.sink.port, pid: ctx.sink.svc.pid, workers: null };
    const rows: Row[] = [];
    for (const s of ctx.opts.sessions) {
      ctx.log(`limit, ${s} sessions`);
      rows.push(await measureThroughput(ctx, t, { id: `limit-s${s}`, label: `limit: smtp-source → smtp-sink`, sessions: s }));
    }
    return rows;
  },
};

type Starter = (ctx: BenchContext, tag: string, profile: boolean) => Promise<Gateway>;

/** The rate for the latency row: half the target's best median throughput in this run. */
function halfLoad(ctx: BenchContext, rows: readonly Row[], target: string): number | null {
  const best = Math.max(
    0,
    ...[...ctx.rows, ...rows]
      .filter((r): r is ThroughputRow => r.kind === 'throughput' && r.target === target && r.workers !== null && r.workers <= 1)
      .map((r) => r.msgPerS ?? 0),
  );
  return best > 0 ? Math.round(best / 2) : null;
}

async function gatewayRows(
  ctx: BenchContext,
  o: { prefix: string; target: string; label: string; start: Starter; latency: boolean; checkWorkers?: number },
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const s of ctx.opts.sessions) {
    ctx.log(`${o.label}, ${s} sessions`);
    const g = await o.start(ctx, `${o.prefix}-s${s}`, ctx.opts.profile && s === Math.max(...ctx.opts.sessions));
    try {
      if (o.checkWorkers !== undefined && workerCount(g) < o.checkWorkers) {
        rows.push({ kind: 'skipped', id: `${o.prefix}-s${s}`, label: o.label, reason: `asked for ${o.checkWorkers} workers, ${workerCount(g)} child processes running` });
        continue;
      }
      rows.push(await measureThroughput(ctx, g, { id: `${o.prefix}-s${s}`, label: o.label, sessions: s }));
    } finally {
      await g.stop();
    }
  }
  if (o.latency) {
    const want = halfLoad(ctx, rows, o.target);
    if (want === null) rows.push({ kind: 'skipped', id: `${o.prefix}-latency`, label: o.label, reason: 'no throughput figure to take half of' });
    else {
      const rate = Math.min(want, MAX_LATENCY_RATE);
      ctx.log(`${o.label}: latency at ${rate} msg/s${rate < want ? ` (half load is ${want}; capped at the client's ceiling)` : ' (half of max)'}`);
      const g = await o.start(ctx, `${o.prefix}-latency`, false);
      try {
        const row = await measureAddedLatency(ctx, g, `${o.prefix}-latency`, o.label, rate);
        if (rate < want) row.notes.push(`half load is ${want} msg/s; measured at ${rate} (client ceiling)`);
        rows.push(row);
      } finally {
        await g.stop();
      }
    }
  }
  return rows;
}

function mailgateStarter(workers: number): Starter {
  return async (ctx, tag, profile) =>
    startMailgate(ctx, ctx.mailgateRoot, {
      workers,
      tag,
      ...(profile ? { cpuProfDir: join(ctx.dirs.work, 'prof', tag) } : {}),
    });
}

function mailgateProducer(id: string, workers: number, latency: boolean): RowProducer {
  const label = workers > 1 ? `mailgate relay only, workers: ${workers}` : 'mailgate relay only';
  return {
    id,
    describe: `smtp-source → mailgate (${workers} worker${workers > 1 ? 's' : ''}) → smtp-sink${latency ? ', and added latency at half load' : ''}`,
    async run(ctx) {
      const missing = mailgateAvailable(ctx.mailgateRoot);
      if (missing) return [{ kind: 'skipped', id, label, reason: missing }];
      return gatewayRows(ctx, {
        prefix: id,
        target: 'mailgate',
        label,
        start: mailgateStarter(workers),
        latency,
        ...(workers > 1 ? { checkWorkers: workers } : {}),
      });
    },
  };
}

function harakaProducer(id: string, nodes: number, latency: boolean): RowProducer {
  const label = nodes > 1 ? `Haraka relay only, nodes=${nodes}` : 'Haraka relay only';
  return {
    id,
    describe: `smtp-source → Haraka (${nodes > 1 ? `cluster, ${nodes} workers` : 'one process'}) → smtp-sink${latency ? ', and added latency at half load' : ''}`,
    async run(ctx) {
      return gatewayRows(ctx, { prefix: id, target: 'haraka', label, start: (c, tag) => startHaraka(c, nodes, `-${tag}`), latency });
    },
  };
}

export const mailgateRows = mailgateProducer('mailgate', 1, true);
export const mailgateW2Rows = mailgateProducer('mailgate-w2', 2, false);
export const harakaRows = harakaProducer('haraka', 0, true);
export const harakaW2Rows = harakaProducer('haraka-w2', 2, false);
