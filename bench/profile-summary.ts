// Summarises V8 CPU profiles (node --cpu-prof, as `npm run bench -- --profile` writes them under
// bench/work/prof/): where the non-idle time went, by package / mailgate file (self time), by
// function (self and total time), and per message when the message count is given.
// Startup (module loading, compiling) is left out: counting starts at the first sample that has
// the SMTP front (src/fronts/smtp/, or dist/fronts/smtp/ in a build) on its stack (the first
// connection), unless --with-startup; a profile without such a sample is counted whole, with a warning.
// Usage: node bench/profile-summary.ts DIR_OR_FILE... [--messages N] [--top 25] [--with-startup]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = process.argv.slice(2);
const opt = (n: string): string | undefined => {
  const i = args.indexOf(n);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const messages = Number(opt('--messages') ?? 0);
const top = Number(opt('--top') ?? 25);
const withStartup = args.includes('--with-startup');
if (withStartup) args.splice(args.indexOf('--with-startup'), 1);
const files = args.flatMap((a) =>
  statSync(a).isDirectory()
    ? readdirSync(a)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(a, f))
    : [a],
);
if (files.length === 0) {
  process.stderr.write('usage: node bench/profile-summary.ts DIR_OR_FILE... [--messages N] [--top 25]\n');
  process.exit(2);
}

/** Where a frame's code lives: a mailgate file, an npm package, node internals or V8. */
function bucket(f: CallFrame): string {
  const u = f.url;
  if (!u) {
    if (f.functionName === '(garbage collector)') return '(gc)';
    if (f.functionName === '(idle)' || f.functionName === '(program)') return f.functionName;
    return '(native/v8)';
  }
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 'node_modules/'.length).split('/');
    return `npm:${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0] === 'internal' ? u.slice(14).split('/')[0] : u.slice(5)}`;
  const src = u.indexOf('/src/');
  if (src >= 0) return `src/${u.slice(src + 5)}`;
  // the compiled build (npm run build) is named after its source file
  const dist = u.indexOf('/dist/');
  if (dist >= 0) return `src/${u.slice(dist + 6).replace(/\.js$/, '.ts')}`;
  return u.replace(/^file:\/\//, '');
}

const self = new Map<string, number>();
const fnSelf = new Map<string, number>();
const fnTotal = new Map<string, number>();
let busy = 0;
let total = 0;
for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const onSmtpPath = (id: number): boolean => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      // The front moved from src/smtp/ to src/fronts/smtp/: matching the old path counted start-up in.
      if (/\/(?:src|dist)\/fronts\/smtp\//.test(byId.get(cur)?.callFrame.url ?? '')) return true;
    }
    return false;
  };
  const found = withStartup ? 0 : p.samples.findIndex(onSmtpPath);
  if (found < 0) process.stderr.write(`${file}: no sample on the SMTP front's path; start-up is counted in\n`);
  const first = Math.max(0, found);
  const dt = new Map<number, number>();
  p.samples.forEach((id, i) => {
    if (i >= first) dt.set(id, (dt.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  for (const [id, us] of dt) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const b = bucket(n.callFrame);
    if (b === '(idle)' || b === '(program)') continue;
    busy += us;
    self.set(b, (self.get(b) ?? 0) + us);
    const key = (f: CallFrame): string => `${f.functionName || '(anonymous)'}  ${bucket(f)}:${f.lineNumber + 1}`;
    fnSelf.set(key(n.callFrame), (fnSelf.get(key(n.callFrame)) ?? 0) + us);
    // total time: every distinct function on the stack gets the sample once
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)?.callFrame;
      if (!f || f.functionName === '(root)') continue;
      const k = key(f);
      if (seen.has(k)) continue;
      seen.add(k);
      fnTotal.set(k, (fnTotal.get(k) ?? 0) + us);
    }
  }
}

const ms = (us: number): string => (us / 1000).toFixed(0).padStart(7);
const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
const perMsg = (us: number): string => (messages > 0 ? `${(us / messages).toFixed(1).padStart(7)} µs/msg` : '');
const print = (title: string, m: Map<string, number>, n: number): void => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`${ms(v)} ms ${pct(v)} ${perMsg(v)}  ${k}\n`);
};
process.stdout.write(
  `${files.length} profile(s): ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(2)} s busy` +
    (messages ? `, ${messages} messages → ${(busy / messages / 1000).toFixed(3)} ms CPU (JS thread) per message` : '') +
    '\n',
);
print('Self time by package / file', self, top);
print('Self time by function', fnSelf, top);
print('Total time by function (includes callees)', fnTotal, top);
