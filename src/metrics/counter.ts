// A Prometheus counter registered in a prom-client Registry like prom-client's own, for the
// counters a message increments a dozen-odd times (DNS cache hits, auth results, backend replies,
// rule hits). prom-client's `inc` hashes and validates the labels on every call; here a label set
// is validated once, when first seen, and an increment is a Map lookup by the label values.
//
// What the registry sees is the same as from prom-client's Counter (`get()` returns the same value
// objects, in the same order), so `/metrics`, `getMetricsAsJSON()` and the cluster aggregation are
// unchanged: test/unit/metrics-counter.test.ts compares both on the same increments.
import { inspect } from 'node:util';
import type { Registry } from 'prom-client';
import { checkLabelNames, labelKey, type Labels } from './labels.ts';

export interface CounterConfig<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: readonly Registry[];
}

interface Entry {
  value: number;
  labels: Readonly<Record<string, string | number | undefined>>;
}

export class Counter<L extends string = string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'counter';
  readonly aggregator = 'sum';
  readonly #labelNames: readonly L[];
  /** By label values in `labelNames` order; insertion order is the output order, as prom-client's. */
  #entries = new Map<string, Entry>();

  constructor(cfg: CounterConfig<L>) {
    this.name = cfg.name;
    this.help = cfg.help;
    this.#labelNames = cfg.labelNames ?? [];
    this.reset();
    for (const r of cfg.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** `inc()`, `inc(value)`, `inc(labels)` or `inc(labels, value)`; value 1 when not given. */
  inc(labelsOrValue?: Labels<L> | number, value?: number): void {
    let labels: Labels<L> = {};
    let v = value;
    if (labelsOrValue !== null && typeof labelsOrValue === 'object') labels = labelsOrValue;
    else v = labelsOrValue;
    if (v && !Number.isFinite(v)) throw new TypeError(`Value is not a valid number: ${inspect(v)}`);
    if (v !== undefined && v !== null && v < 0) throw new Error('It is not possible to decrease a counter');
    const add = v ?? 1;
    const key = labelKey(this.#labelNames, labels);
    const e = this.#entries.get(key);
    if (e) {
      e.value += add;
      return;
    }
    checkLabelNames(this.#labelNames, labels);
    this.#entries.set(key, { value: add, labels });
  }

  /** Drops every label set (a counter without labels goes back to one series at 0, as prom-client's). */
  reset(): void {
    this.#entries = new Map();
    if (this.#labelNames.length === 0) this.#entries.set('', { value: 0, labels: {} });
  }

  async get(): Promise<{ name: string; help: string; type: 'counter'; values: Entry[]; aggregator: 'sum' }> {
    return { help: this.help, name: this.name, type: 'counter', values: [...this.#entries.values()], aggregator: 'sum' };
  }
}
