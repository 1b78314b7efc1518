// The private directory large messages are spooled to: created mode 0700, refused if another
// user owns it or it is a symlink, and emptied of our leftovers at start (a crash leaves temp
// files; a shared /tmp/mailgate-spool could be pre-created by any local user: issue 14, item 10).
import { chmodSync, lstatSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Names the spool gives its temp files (src/message/spool.ts): only these are ever removed. */
const SPOOL_FILE_PREFIX = 'spool-';

/** Where the spool lives unless `spool_dir` says otherwise: `spool/` beside the quarantine. */
export function defaultSpoolDir(quarantineDir: string): string {
  return join(dirname(quarantineDir), 'spool');
}

export class SpoolDirError extends Error {}

/**
 * Makes `path` ready for use and returns it: creates it (and parents) mode 0700, checks that it
 * is a real directory owned by this user, tightens its mode to 0700, and removes leftover spool
 * files. Throws SpoolDirError naming the path and the problem.
 */
export function prepareSpoolDir(path: string): { path: string; removed: number } {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const st = lstatSync(path);
  if (st.isSymbolicLink()) throw new SpoolDirError(`spool_dir ${path}: is a symbolic link; use a real directory`);
  if (!st.isDirectory()) throw new SpoolDirError(`spool_dir ${path}: not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new SpoolDirError(`spool_dir ${path}: owned by uid ${st.uid}, not by this user (uid ${uid}); another user could read or plant spool files`);
  }
  if ((st.mode & 0o777) !== 0o700) chmodSync(path, 0o700);
  let removed = 0;
  for (const name of readdirSync(path)) {
    if (!name.startsWith(SPOOL_FILE_PREFIX)) continue;
    // spool-<pid>-<random>: workers share the directory, so a live process's files stay.
    const pid = Number(name.slice(SPOOL_FILE_PREFIX.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) continue;
    try {
      unlinkSync(join(path, name));
      removed++;
    } catch {
      // gone already, or not a file: nothing of ours to clean
    }
  }
  return { path, removed };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
