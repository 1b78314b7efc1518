// Fails when an import runs from a lower layer of src/ up to a higher one, or when imports form a
// cycle. The layers (README "Architecture") from the ground up; a module may import its own layer
// or any lower one. Run by `npm test` (npm run lint:layers).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const LAYERS: ReadonlyArray<readonly string[]> = [
  ['net', 'metrics', 'log'],
  ['message', 'dns', 'store', 'config', 'trace'],
  ['pipeline'],
  ['rules'],
  ['checks'],
  ['delivery'],
  ['fronts'],
  ['admin'],
  ['.'], // src/gateway.ts: composes everything
  ['cli'],
];

// The tree to check: src/ of this repository, or the directory given (tests of the checker).
const root = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'src'));
const rank = new Map<string, number>();
LAYERS.forEach((names, i) => names.forEach((n) => rank.set(n, i)));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function layerOf(file: string): string {
  const rel = relative(root, file);
  return rel.includes('/') ? (rel.split('/')[0] as string) : '.';
}

// Static imports and re-exports with a relative specifier ("import type" included: a type import
// up the layers is the same design error, even if erased at run time).
const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s*['"](\.[^'"]+)['"]|^\s*import\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/gm;

const problems: string[] = [];
const graph = new Map<string, string[]>();
for (const f of files(root)) {
  const from = layerOf(f);
  const r = rank.get(from);
  if (r === undefined) problems.push(`${relative(root, f)}: directory src/${from} is not in a layer (scripts/check-layers.ts)`);
  const deps: string[] = [];
  for (const m of readFileSync(f, 'utf8').matchAll(IMPORT)) {
    const spec = (m[1] ?? m[2] ?? m[3]) as string;
    const target = resolve(dirname(f), spec);
    if (!target.startsWith(root)) continue;
    deps.push(target);
    const to = layerOf(target);
    const tr = rank.get(to);
    if (r !== undefined && tr !== undefined && tr > r)
      problems.push(`src/${relative(root, f)} imports src/${relative(root, target)}: ${from} may not import ${to} (a higher layer)`);
  }
  graph.set(f, deps);
}

// Cycles: depth-first search with colours.
const colour = new Map<string, 1 | 2>();
const stack: string[] = [];
function visit(n: string): void {
  colour.set(n, 1);
  stack.push(n);
  for (const d of graph.get(n) ?? []) {
    if (colour.get(d) === 1) {
      const cyc = stack
        .slice(stack.indexOf(d))
        .concat(d)
        .map((x) => relative(root, x));
      problems.push(`import cycle: ${cyc.join(' → ')}`);
    } else if (!colour.has(d) && graph.has(d)) visit(d);
  }
  stack.pop();
  colour.set(n, 2);
}
for (const n of graph.keys()) if (!colour.has(n)) visit(n);

if (problems.length > 0) {
  process.stderr.write(`${[...new Set(problems)].join('\n')}\n${problems.length} layering problem(s)\n`);
  process.exit(1);
}
process.stdout.write(`layers ok: ${graph.size} modules, no upward import, no cycle\n`);
