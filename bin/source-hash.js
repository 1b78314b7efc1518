// The fingerprint of the sources dist/ is built from: every file under src/ (path and bytes).
// `npm run build` writes it to dist/BUILD_HASH; the launcher runs dist/ only
// when it still matches, so an edited src/ is never shadowed by an old build. Plain JavaScript.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Every file under dir, as paths relative to root, sorted (the hash must not depend on readdir order). */
function listFiles(root, dir, out) {
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) listFiles(root, rel, out);
    else if (e.isFile()) out.push(rel);
  }
  return out;
}

/** sha256 over src/** of the checkout at root (and the Node version: the build uses its type stripper). */
export function sourceHash(root) {
  const h = createHash('sha256');
  h.update(`node ${process.versions.node}\0`);
  const files = listFiles(root, 'src', []).sort();
  for (const f of files) {
    const body = readFileSync(join(root, f));
    // length-prefixed, so two files can never hash like one
    h.update(`${f}\0${body.length}\0`);
    h.update(body);
  }
  return h.digest('hex');
}

/**
 * The entry module to run: dist/cli/main.js when dist/ was built from exactly these sources, else
 * src/cli/main.ts (Node's type stripping). `stale` says dist/ exists but no longer matches.
 */
export function chooseEntry(root) {
  const stamp = join(root, 'dist', 'BUILD_HASH');
  const src = join(root, 'src', 'cli', 'main.ts');
  if (!existsSync(stamp)) return { entry: src, dist: false, stale: false };
  const built = readFileSync(stamp, 'utf8').trim();
  if (built === sourceHash(root) && existsSync(join(root, 'dist', 'cli', 'main.js')))
    return { entry: join(root, 'dist', 'cli', 'main.js'), dist: true, stale: false };
  return { entry: src, dist: false, stale: true };
}
