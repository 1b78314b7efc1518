// Diagnostic: where does one SMTP session spend its time? Runs N sessions one after another
// against 127.0.0.1:PORT and prints the median time of every step (connect → 220, EHLO, MAIL,
// RCPT, DATA, end of data → 250, QUIT → close). A step near 40 ms is a Nagle / delayed-ACK stall.
// Usage: node bench/session-trace.ts PORT [COUNT] [MESSAGE_FILE(LF)]
import { readFileSync } from 'node:fs';
import { SmtpConn } from './lib/smtp-client.ts';
import { median, round } from './lib/stats.ts';
import { smallMessage } from './lib/corpus.ts';

const port = Number(process.argv[2]);
const count = Number(process.argv[3] ?? 20);
const text = process.argv[4] ? readFileSync(process.argv[4], 'utf8') : smallMessage();
const wire = Buffer.from(
  `${text
    .split('\n')
    .map((l) => (l.startsWith('.') ? `.${l}` : l))
    .join('\r\n')}.\r\n`,
);
if (!(port > 0)) {
  process.stderr.write('usage: node bench/session-trace.ts PORT [COUNT] [MESSAGE_FILE]\n');
  process.exit(2);
}

const steps: Record<string, number[]> = {};
const rec = (k: string, ms: number): void => void (steps[k] ??= []).push(ms);

for (let i = 0; i < count; i++) {
  let t = performance.now();
  const lap = (k: string): void => {
    const n = performance.now();
    rec(k, n - t);
    t = n;
  };
  const c = await SmtpConn.open(port);
  lap('connect → 220');
  await c.cmd('EHLO trace.example.test', 250);
  lap('EHLO');
  await c.cmd('MAIL FROM:<sender@example.test>', 250);
  lap('MAIL');
  await c.cmd('RCPT TO:<rcpt@example.test>', 250);
  lap('RCPT');
  await c.cmd('DATA', 354);
  lap('DATA → 354');
  c.socket.write(wire);
  const r = await c.reply();
  if (r.code !== 250) throw new Error(`end of data: ${r.text}`);
  lap('end of data → 250');
  c.socket.write('QUIT\r\n');
  await c.reply();
  lap('QUIT → 221');
  await new Promise<void>((resolve) => (c.socket.destroyed ? resolve() : c.socket.once('close', () => resolve())));
  lap('221 → close');
}
let total = 0;
for (const [k, v] of Object.entries(steps)) {
  const m = median(v) ?? 0;
  total += m;
  process.stdout.write(`${k.padEnd(20)} median ${String(round(m, 3)).padStart(8)} ms   max ${round(Math.max(...v), 3)} ms\n`);
}
process.stdout.write(`${'total'.padEnd(20)} median ${String(round(total, 3)).padStart(8)} ms  (${count} sessions)\n`);
