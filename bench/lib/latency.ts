// Open-loop latency probe: starts one message per new connection at a fixed rate (independent of
// how fast replies come back, so a slow server shows up as latency, not as a lower rate) and
// records the DATA-end → 250 time of each.
import { sendOne } from './smtp-client.ts';
import { percentile } from './stats.ts';

export interface LatencyResult {
  rate: number;
  sent: number;
  ok: number;
  errors: number;
  /** Messages that could not start because maxInFlight were already open (server overloaded). */
  skipped: number;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /** Achieved start rate (msg/s). */
  achievedRate: number;
  firstError?: string;
}

export interface LatencyOptions {
  port: number;
  wire: Buffer;
  rate: number;
  count: number;
  maxInFlight?: number;
  timeoutS?: number;
}

export async function measureLatency(o: LatencyOptions): Promise<LatencyResult> {
  const maxInFlight = o.maxInFlight ?? 200;
  const samples: number[] = [];
  let started = 0;
  let inFlight = 0;
  let errors = 0;
  let skipped = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const deadline = t0 + (o.timeoutS ?? 120) * 1000;
  const launch = (): void => {
    started++;
    if (inFlight >= maxInFlight) {
      skipped++;
      return;
    }
    inFlight++;
    sendOne(o.port, o.wire)
      .then((t) => samples.push(t.dataEndMs))
      .catch((e: unknown) => {
        errors++;
        firstError ??= e instanceof Error ? e.message : String(e);
      })
      .finally(() => inFlight--);
  };
  // a 1 ms tick that catches up to elapsed × rate, so rates above 1,000/s work too
  while (started < o.count && performance.now() < deadline) {
    const due = Math.min(o.count, Math.floor(((performance.now() - t0) / 1000) * o.rate) + 1);
    while (started < due) launch();
    await new Promise((r) => setTimeout(r, 1));
  }
  const sendS = (performance.now() - t0) / 1000;
  while (inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  samples.sort((a, b) => a - b);
  return {
    rate: o.rate,
    sent: started,
    ok: samples.length,
    errors,
    skipped,
    p50Ms: percentile(samples, 0.5),
    p90Ms: percentile(samples, 0.9),
    p99Ms: percentile(samples, 0.99),
    maxMs: samples.at(-1) ?? null,
    achievedRate: started / sendS,
    ...(firstError ? { firstError } : {}),
  };
}
