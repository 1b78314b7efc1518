// The I/O dependencies every check may use, built once by the gateway and injected, so tests can
// pass real servers (a DNS server on loopback, a real Redis) without patching modules.
import type { Logger } from 'pino';
import type { SharedStore } from '../store/shared-store.ts';
import type { Config } from '../config/schema.ts';

import type { DnsLookup } from '../dns/lookup.ts';

export type { DnsLookup };

export interface Deps {
  logger: Logger;
  /** Milliseconds since the epoch; injected so greylisting and rate limits can be tested. */
  now: () => number;
  dns?: DnsLookup;
  /** Shared state for rate limits, concurrency limits and greylisting (src/store/create-store.ts). */
  store?: SharedStore;
  /** The config in force (it changes on SIGHUP): checks that follow reloads read it through this. */
  config?: () => Config;
}
