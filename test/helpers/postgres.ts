// A private PostgreSQL for tests: initdb in a temp dir owned by `postgres`, started on a free
// loopback port with its socket in that dir (never the system cluster); trust auth on loopback.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postfix.ts';

export interface TestPostgres {
  url: string;
  port: number;
  dir: string;
  stop(): void;
}

function binDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const v = readdirSync(base).sort().pop();
  return v ? join(base, v, 'bin') : undefined;
}

export function postgresAvailable(): { ok: true } | { ok: false; why: string } {
  if (!binDir()) return { ok: false, why: 'postgresql is not installed: apt-get install -y postgresql' };
  if (process.getuid?.() !== 0) return { ok: false, why: 'the private PostgreSQL is started as the postgres user (needs root)' };
  return { ok: true };
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  if (!bin) throw new Error('postgresql is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-pg-'));
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(dir, uid, gid);
  const port = await freePort();
  const asPg = (cmd: string) => execFileSync('su', ['postgres', '-s', '/bin/sh', '-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  asPg(`${bin}/initdb -D ${dir}/data -A trust -U mailgate >/dev/null`);
  asPg(`${bin}/pg_ctl -D ${dir}/data -o '-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off' -l ${dir}/log -w start >/dev/null`);
  return {
    url: `postgres://mailgate@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop() {
      try {
        asPg(`${bin}/pg_ctl -D ${dir}/data -m immediate -w stop >/dev/null`);
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
