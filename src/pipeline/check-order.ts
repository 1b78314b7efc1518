// Orders the checks of one stage from what they declare: a check runs after every check of the
// same stage that produces a fact it needs, concurrently with the rest (Rspamd's symbol
// dependencies). A need nothing can satisfy, or a cycle, is an error at load time, not a silent pass.
import type { Check } from './check.ts';
import type { FactSpec } from './facts.ts';
import { stageIndex, type Stage } from './stages.ts';

/** Whether the fact `name` satisfies the need `need` (`dmarc.result`, or `dmarc.*` for any dmarc fact). */
export function satisfies(need: string, name: string): boolean {
  if (need.endsWith('.*')) return name.startsWith(need.slice(0, -1));
  return need === name;
}

function producesAny(c: Check, need: string): boolean {
  return c.facts.some((f) => satisfies(need, f.name));
}

/**
 * The checks of `stage` in layers: every check of a layer depends only on checks of earlier
 * layers. Throws when checks of the stage need each other in a cycle.
 */
export function stageLayers(checks: readonly Check[], stage: Stage): Check[][] {
  return layersOf(
    checks.filter((c) => c.stages.includes(stage)),
    stage,
  );
}

/** What a stage's layers were computed from: the checks that run there, their needs and facts. */
interface Plan {
  here: readonly Check[];
  needs: readonly (readonly string[] | undefined)[];
  facts: readonly (readonly FactSpec[])[];
  layers: Check[][];
}
const plans = new WeakMap<readonly Check[], Map<Stage, Plan>>();

function samePlan(p: Plan, here: readonly Check[]): boolean {
  if (p.here.length !== here.length) return false;
  for (let i = 0; i < here.length; i++) {
    const c = here[i] as Check;
    if (p.here[i] !== c || p.facts[i] !== c.facts) return false;
    const a = p.needs[i];
    const b = c.needs;
    if (a === b) continue;
    if ((a?.length ?? 0) !== (b?.length ?? 0)) return false;
    for (let j = 0; j < (b?.length ?? 0); j++) if (a?.[j] !== b?.[j]) return false;
  }
  return true;
}

/**
 * stageLayers for the message path: the same layers, reused while the checks array, the checks
 * that run at the stage, their needs and their fact lists are unchanged (stages and needs follow
 * the rules, so they are compared on every call; the dependency graph is not rebuilt).
 */
export function cachedStageLayers(checks: readonly Check[], stage: Stage): Check[][] {
  const here = checks.filter((c) => c.stages.includes(stage));
  let byStage = plans.get(checks);
  const p = byStage?.get(stage);
  if (p && samePlan(p, here)) return p.layers;
  const layers = layersOf(here, stage);
  if (!byStage) plans.set(checks, (byStage = new Map()));
  byStage.set(stage, { here, needs: here.map((c) => (c.needs ? [...c.needs] : undefined)), facts: here.map((c) => c.facts), layers });
  return layers;
}

function layersOf(here: Check[], stage: Stage): Check[][] {
  if (here.length <= 1) return here.length === 0 ? [] : [here];
  const deps = new Map<Check, Set<Check>>();
  for (const c of here) {
    const d = new Set<Check>();
    for (const need of c.needs ?? []) for (const o of here) if (o !== c && producesAny(o, need)) d.add(o);
    deps.set(c, d);
  }
  const layers: Check[][] = [];
  const done = new Set<Check>();
  while (done.size < here.length) {
    const layer = here.filter((c) => !done.has(c) && [...(deps.get(c) as Set<Check>)].every((d) => done.has(d)));
    if (layer.length === 0) {
      const stuck = here.filter((c) => !done.has(c)).map((c) => c.name);
      throw new Error(`checks ${stuck.join(', ')} need each other's facts at ${stage}: no order can satisfy them`);
    }
    for (const c of layer) done.add(c);
    layers.push(layer);
  }
  return layers;
}

/**
 * Problems with the checks' declared needs: a need that no check at this or an earlier stage (nor
 * the core) produces, and cycles. Empty when the set of checks can run.
 */
export function planProblems(checks: readonly Check[], coreFacts: readonly FactSpec[], stages: readonly Stage[]): string[] {
  const problems: string[] = [];
  for (const c of checks) {
    // A check that runs at no stage (switched off by its rules section) needs nothing.
    if (c.stages.length === 0) continue;
    for (const need of c.needs ?? []) {
      const last = Math.max(...c.stages.map(stageIndex));
      const known =
        coreFacts.some((f) => satisfies(need, f.name) && stageIndex(f.stage) <= last) ||
        checks.some((o) => o !== c && o.stages.some((s) => stageIndex(s) <= last) && producesAny(o, need));
      if (!known) problems.push(`check ${c.name} needs ${need}, which no enabled check produces by stage ${c.stages[c.stages.length - 1] ?? ''}`);
    }
  }
  for (const s of stages) {
    try {
      stageLayers(checks, s);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return problems;
}
