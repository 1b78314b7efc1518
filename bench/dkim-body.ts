// CPU of the DKIM body hash alone: dkim-body-hash.ts against mailauth's hashers (lib/dkim/body/),
// interleaved rounds in one process, on the bench corpus's body and on a large base64 body.
// Run: node bench/dkim-body.ts [rounds]
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCorpus } from './lib/corpus.ts';
import { DkimBodyHash } from '../src/checks/auth/dkim-body-hash.ts';

const require = createRequire(import.meta.url);
const { dkimBody } = require('mailauth/lib/dkim/body/index.js') as {
  dkimBody: (c: string, a: string, l?: number) => { update(b: Buffer): void; digest(e: 'base64'): string };
};
const rounds = Number(process.argv[2] ?? 6);
const corpus = await buildCorpus(mkdtempSync(join(tmpdir(), 'mailgate-bench-body-')));
const wire = corpus.smallWire;
const small = wire.subarray(wire.indexOf('\r\n\r\n') + 4);
const line = Buffer.from(`${'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo'.repeat(2).slice(0, 76)}\r\n`);
const big = Buffer.concat(Array.from({ length: Math.ceil((8 << 20) / line.length) }, () => line));
const chunksOf = (b: Buffer, size: number): Buffer[] => Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size));
const bodies = [
  { name: `corpus body (${small.length} B, one chunk)`, chunks: [small], n: 20000 },
  { name: `8 MiB base64 body (64 KiB chunks)`, chunks: chunksOf(big, 65536), n: 3 },
];
const impls = {
  ours: (canon: 'simple' | 'relaxed', chunks: Buffer[]) => {
    const h = new DkimBodyHash(canon, 'sha256', undefined);
    for (const c of chunks) h.update(c);
    return h.digest('base64');
  },
  mailauth: (canon: 'simple' | 'relaxed', chunks: Buffer[]) => {
    const h = dkimBody(canon, 'sha256');
    for (const c of chunks) h.update(c);
    return h.digest('base64');
  },
};
for (const b of bodies) {
  for (const canon of ['relaxed', 'simple'] as const) {
    if (impls.ours(canon, b.chunks) !== impls.mailauth(canon, b.chunks)) throw new Error(`hashes differ: ${b.name} ${canon}`);
    const per: Record<string, number[]> = { ours: [], mailauth: [] };
    for (let r = 0; r < rounds; r++) {
      for (const name of (r % 2 ? ['mailauth', 'ours'] : ['ours', 'mailauth']) as Array<keyof typeof impls>) {
        const c0 = process.cpuUsage();
        for (let i = 0; i < b.n; i++) impls[name](canon, b.chunks);
        const c = process.cpuUsage(c0);
        per[name]?.push((c.user + c.system) / b.n);
      }
    }
    const fmt = (xs: number[]) => `min ${Math.min(...xs).toFixed(1)} median ${[...xs].sort((x, y) => x - y)[xs.length >> 1]?.toFixed(1)} µs`;
    console.log(`${b.name}, ${canon}: ours ${fmt(per.ours ?? [])}; mailauth ${fmt(per.mailauth ?? [])}`);
  }
}
