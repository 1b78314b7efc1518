// Memory rows: RSS while holding N idle connections (after EHLO), and RSS growth while relaying
// one large message — mailgate and Haraka, each freshly started, one process each.
import { measureBigMessage, measureIdleConns } from '../lib/measure.ts';
import { bigMessage } from '../lib/corpus.ts';
import { startHaraka } from '../lib/haraka.ts';
import { mailgateAvailable, mailgateRoot, startMailgate } from '../lib/mailgate.ts';
import { ALL_CHECKS } from './throughput.ts';
import type { BenchContext, Gateway, Row, RowProducer } from '../lib/types.ts';
import { join } from 'node:path';

interface Contender {
  name: string;
  label: string;
  start(ctx: BenchContext, tag: string): Promise<Gateway>;
  missing(ctx: BenchContext): string | null;
}

const contenders: Contender[] = [
  {
    name: 'mailgate',
    label: 'mailgate (workers: 1)',
    start: (ctx, tag) => startMailgate(ctx, ctx.mailgateRoot, { workers: 1, tag }),
    missing: (ctx) => mailgateAvailable(ctx.mailgateRoot),
  },
  {
    name: 'haraka',
    label: 'Haraka (nodes=0, one process)',
    start: (ctx, tag) => startHaraka(ctx, 0, `-${tag}`),
    missing: () => null,
  },
];

/**
 * The idle row also compares like with like: mailgate with every check disabled against Haraka
 * relay only, and Haraka with mailauth loaded (its plugin, warmed up by the same 200 messages)
 * against mailgate's shipped config, which runs SPF, DKIM, ARC and DMARC and much more.
 */
const idleExtra: Contender[] = [
  {
    name: 'mailgate-relay',
    label: 'mailgate relay only (checks.disabled: every check)',
    start: (ctx, tag) => startMailgate(ctx, ctx.mailgateRoot, { workers: 1, tag, overrides: { checks: { disabled: ALL_CHECKS } } }),
    missing: (ctx) => mailgateAvailable(ctx.mailgateRoot),
  },
  {
    name: 'haraka-auth',
    label: 'Haraka + mailauth (SPF, DKIM, ARC, DMARC) (nodes=0, one process)',
    start: (ctx, tag) => startHaraka(ctx, 0, `-${tag}`, true),
    missing: () => null,
  },
];

/** smtp-sink itself: for the large message, the time a direct delivery takes. */
const sinkDirect: Contender = {
  name: 'limit',
  label: 'smtp-sink directly (time reference)',
  start: async (ctx) => ({ name: 'limit', port: ctx.sink.port, pid: ctx.sink.svc.pid, workers: null, stop: async () => undefined, logTail: () => '' }),
  missing: () => null,
};

/** `--compare-rev REV`: mailgate at that revision, measured the same way right after the working tree's. */
function revContender(rev: string): Contender {
  return {
    name: 'mailgate-rev',
    label: `mailgate at ${rev} (workers: 1)`,
    start: (ctx, tag) => startMailgate(ctx, mailgateRoot(ctx, rev), { workers: 1, tag }),
    missing: (ctx) => mailgateAvailable(mailgateRoot(ctx, rev)),
  };
}

async function each(
  ctx: BenchContext,
  test: string,
  fn: (g: Gateway, c: Contender) => Promise<Row>,
  extra: Contender[] = [],
  after: Contender[] = [],
): Promise<Row[]> {
  const rows: Row[] = [];
  const rev = ctx.opts.compareRev;
  const all = [...extra, ...contenders, ...after];
  if (rev) all.splice(all.findIndex((c) => c.name === 'mailgate') + 1, 0, revContender(rev));
  for (const c of all) {
    const id = `${c.name}-${test}`;
    const missing = c.missing(ctx);
    if (missing) {
      rows.push({ kind: 'skipped', id, label: c.label, reason: missing });
      continue;
    }
    ctx.log(`${c.label}: ${test}`);
    const g = await c.start(ctx, id);
    try {
      rows.push(await fn(g, c));
    } finally {
      await g.stop();
    }
  }
  return rows;
}

export const idleRows: RowProducer = {
  id: 'idle',
  describe: 'RSS while holding 1,000 idle connections (after EHLO): mailgate vs Haraka',
  run: (ctx) => each(ctx, 'idle', (g, c) => measureIdleConns(ctx, g, `${c.name}-idle`, c.label, ctx.opts.idleConns), [], idleExtra),
};

export const bigRows: RowProducer = {
  id: 'big',
  describe: 'RSS growth while relaying one 50 MB message: mailgate vs Haraka',
  async run(ctx) {
    const file = await bigMessage(join(ctx.dirs.work, 'corpus'), ctx.opts.bigBytes);
    return each(ctx, 'big', (g, c) => measureBigMessage(ctx, g, `${c.name}-big`, c.label, file, ctx.opts.bigBytes), [sinkDirect]);
  },
};
