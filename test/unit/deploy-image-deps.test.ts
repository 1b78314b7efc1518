// The container image installs production dependencies only (npm ci --omit=dev): every package
// that src/ imports at run time must be in package.json "dependencies", not "devDependencies".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

/** Bare specifiers of run-time imports (static `import … from 'x'`, `import 'x'`, `import('x')`); `import type` is erased. */
export function runtimeImports(source: string): string[] {
  const out: string[] = [];
  for (const raw of source.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('import type ') || line.startsWith('export type ')) continue;
    for (const marker of ["from '", "import '", "import('"]) {
      let at = line.indexOf(marker);
      while (at >= 0) {
        const start = at + marker.length;
        const end = line.indexOf("'", start);
        if (end < 0) break;
        out.push(line.slice(start, end));
        at = line.indexOf(marker, end);
      }
    }
  }
  return out.filter((s) => !s.startsWith('.') && !s.startsWith('/'));
}

function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] as string);
}

test('runtimeImports: static, side-effect and dynamic imports; type imports skipped', () => {
  const src =
    "import a from 'pino';\nimport type { X } from 'typescript';\nimport 'yaml';\nconst m = await import('ioredis');\nimport { b } from './local.ts';\nimport fs from 'node:fs';";
  assert.deepEqual(runtimeImports(src), ['pino', 'yaml', 'ioredis', 'node:fs']);
});

test('src/ imports only production dependencies and Node built-ins', () => {
  const problems: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        for (const spec of runtimeImports(readFileSync(p, 'utf8'))) {
          if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
          const name = packageName(spec);
          if (!(name in pkg.dependencies))
            problems.push(`${p.slice(root.length + 1)}: '${spec}' is ${name in pkg.devDependencies ? 'a devDependency' : 'not in package.json'}`);
        }
      }
    }
  };
  walk(join(root, 'src'));
  assert.deepEqual(problems, []);
});
