// Facts: what checks learn about a connection or message, as named values the rules engine reads.
// A fact name is dotted lowercase (`spf.result`, `client.ip`); every fact is declared once in a
// FactSpec so that rules can be validated and the stage a rule fires at can be inferred.
import type { Stage } from './stages.ts';

export type Scalar = string | number | boolean | null;
/** A record, e.g. one DKIM signature: { result: 'pass', domain: 'example.com', selector: 's1' }. */
export type FactRecord = Readonly<Record<string, Scalar>>;
export type FactValue = Scalar | readonly string[] | readonly FactRecord[];

export type FactType = 'string' | 'number' | 'boolean' | 'string[]' | 'records' | 'ip';

export interface FactSpec {
  /** Dotted name rules refer to, e.g. `spf.result`. */
  name: string;
  /** Earliest stage at which the fact is known. */
  stage: Stage;
  type: FactType;
  description: string;
  /** For `records`: the fields each record has, for validation of rules that read them. */
  fields?: readonly string[];
  /** For enumerated strings: the values the fact can take, so a typo in a rule is an error. */
  values?: readonly string[];
  /** Put on the per-message log line when set (what decided, e.g. `backscatter.reason`). */
  log?: boolean;
}

/**
 * The facts of one connection or transaction. Connection facts are copied into each new
 * transaction so that a transaction's FactSet is self-contained (replay, rules test, capture).
 */
export class FactSet {
  readonly #values = new Map<string, FactValue>();

  constructor(from?: FactSet | Iterable<readonly [string, FactValue]>) {
    if (from instanceof FactSet) for (const [k, v] of from.#values) this.#values.set(k, v);
    else if (from) for (const [k, v] of from) this.#values.set(k, v);
  }

  set(name: string, value: FactValue): void {
    this.#values.set(name, value);
  }

  get(name: string): FactValue | undefined {
    return this.#values.get(name);
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  delete(name: string): void {
    this.#values.delete(name);
  }

  /** Sets every fact of this set in `target` and empties this set. */
  moveInto(target: FactSet): void {
    if (this.#values.size === 0) return;
    for (const [k, v] of this.#values) target.#values.set(k, v);
    this.#values.clear();
  }

  entries(): IterableIterator<[string, FactValue]> {
    return this.#values.entries();
  }

  toJSON(): Record<string, FactValue> {
    return Object.fromEntries(this.#values);
  }

  static fromJSON(obj: Record<string, FactValue>): FactSet {
    return new FactSet(Object.entries(obj));
  }
}
