// Builds the milter front from the gateway's runtime and the `milter:` config section: the
// listener, its limits and the adapter over the transaction core. gateway.ts starts and stops what this returns.
import type { MilterConfig } from '../../config/schema.ts';
import type { Runtime } from '../../pipeline/runtime.ts';
import { MilterListener } from './listener.ts';
import { parseMilterAddress } from '../../net/milter-address.ts';
import { corePipelineFactory } from './core-pipeline.ts';

export function createMilterFront(rt: Runtime, cfg: MilterConfig): MilterListener {
  const address = parseMilterAddress(cfg.listen);
  // The schema validated it; a string here is a bug, not a config problem.
  if (typeof address === 'string') throw new Error(`milter.listen: ${address}`);
  const lim = rt.config.limits;
  return new MilterListener({
    address,
    ...(cfg.mode !== undefined ? { mode: parseInt(cfg.mode, 8) } : {}),
    ...(cfg.owner !== undefined ? { owner: cfg.owner } : {}),
    maxConnections: lim.max_connections,
    maxPacketBytes: cfg.max_packet_bytes,
    // Postfix keeps the milter connection open, silent, while its SMTP client idles (up to
    // smtpd_timeout): give it a minute more than our own SMTP idle limit before closing it.
    idleTimeoutMs: lim.idle_timeout_s * 1000 + 60_000,
    pipeline: corePipelineFactory(rt, { quarantine: cfg.quarantine }),
    logger: rt.logger,
  });
}
