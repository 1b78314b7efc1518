// `npm run build`: src/ as plain JavaScript in dist/, for the `mailgate` launcher to run instead
// of src/ through Node's type stripping at every start (which keeps ≈ 15–30 MiB resident for
// the life of the process: bench/HISTORY.md). Each file goes through Node's own
// module.stripTypeScriptTypes — exactly what Node does at run time, so lines and columns stay
// those of src/ and stack traces need no source map — and its relative `./x.ts` specifiers become
// `./x.js`; other files (the Redis Lua scripts) are copied. dist/BUILD_HASH records the
// fingerprint of src/ it was built from (bin/source-hash.js): the launcher runs dist/ only while it
// matches. No dev dependency is needed, so `npm ci --omit=dev` builds it too (npm's prepare step).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, cpSync, existsSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { sourceHash } from '../bin/source-hash.js';

const root = resolve(import.meta.dirname, '..');
const src = join(root, 'src');
// built next to dist/ and renamed into place: a launcher starting meanwhile sees the old dist/ or the new one
const tmp = join(root, `dist.tmp-${process.pid}`);
const dist = join(root, 'dist');

// Relative specifiers of static imports, re-exports and dynamic imports (the tree is written with
// verbatimModuleSyntax and allowImportingTsExtensions: every relative import names its .ts file).
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.\.?\/[^'"\n]*?)\.ts\2/g;
// after rewriting, a relative .ts specifier left anywhere means one the pattern did not know
const LEFT = /(['"])\.\.?\/[^'"\n]*\.ts\1/;

const problems: string[] = [];

function build(rel: string): void {
  for (const e of readdirSync(join(src, rel), { withFileTypes: true })) {
    const r = join(rel, e.name);
    if (e.isDirectory()) build(r);
    else if (e.name.endsWith('.ts')) {
      const code = stripTypeScriptTypes(readFileSync(join(src, r), 'utf8'), { mode: 'strip' });
      const js = code.replace(SPECIFIER, (_m, lead: string, q: string, path: string) => {
        if (!existsSync(join(src, dirname(r), `${path}.ts`))) problems.push(`${r}: ${path}.ts does not exist`);
        return `${lead}${q}${path}.js${q}`;
      });
      const left = LEFT.exec(js);
      if (left) problems.push(`${r}: specifier ${left[0]} not rewritten (write it as a literal import)`);
      const out = join(tmp, r.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, js);
    } else {
      mkdirSync(join(tmp, rel), { recursive: true });
      cpSync(join(src, r), join(tmp, r));
    }
  }
}

// the hash is taken first: an edit made while building leaves the stamp stale, never wrong
const hash = sourceHash(root);
rmSync(tmp, { recursive: true, force: true });
try {
  build('');
  if (problems.length > 0) throw new Error(`build: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  writeFileSync(join(tmp, 'BUILD_HASH'), `${hash}\n`);
  rmSync(dist, { recursive: true, force: true });
  renameSync(tmp, dist);
} catch (err) {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write(`${(err as Error).message}\nmailgate keeps running from src/\n`);
  process.exit(1);
}
process.stdout.write(`build: dist/ from src/ (${hash.slice(0, 12)})\n`);
