// Summarises a sampling heap profile (bench/experiments/alloc-sample.mjs): bytes allocated by
// function (self) and by the first frame in mailgate's src/ or in a dependency (site), per message
// when the message count is given. Run: node bench/alloc-summary.ts FILE [messages] [rows]
import { readFileSync } from 'node:fs';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}
const file = process.argv[2];
if (!file) throw new Error('usage: node bench/alloc-summary.ts FILE [messages] [rows]');
const messages = Number(process.argv[3] ?? 1);
const rows = Number(process.argv[4] ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: Node };

const where = (n: Node): string => {
  const url = n.callFrame.url.replace(/^file:\/\//, '').replace(/^.*?\/(src|dist|bench|test|node_modules)\//, '$1/');
  return `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
};
const isOurs = (n: Node): boolean => /\/(src|dist|node_modules)\//.test(n.callFrame.url);
const self = new Map<string, number>();
const site = new Map<string, number>();
let total = 0;
function walk(n: Node, stack: Node[]): void {
  if (n.selfSize > 0) {
    total += n.selfSize;
    const k = where(n);
    self.set(k, (self.get(k) ?? 0) + n.selfSize);
    // the innermost frame of src/ or node_modules/ (the site that asked for the allocation)
    const s = [...stack, n].reverse().find(isOurs);
    const sk = s ? where(s) : '(runtime)';
    site.set(sk, (site.get(sk) ?? 0) + n.selfSize);
  }
  for (const c of n.children) walk(c, [...stack, n]);
}
walk(profile.head, []);
const kib = (b: number): string => (b / 1024 / messages).toFixed(1).padStart(9);
const print = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (KiB per message)`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, rows)) console.log(`${kib(v)}  ${k}`);
};
console.log(`total ${kib(total)} KiB per message over ${messages} messages`);
print('by site (innermost src/ or node_modules/ frame)', site);
print('by function (self)', self);
