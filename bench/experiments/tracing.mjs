// Experiment (not shipped code): the OTLP/HTTP sink for tracing.yaml. Preloaded into mailgate with
// --import, it starts the sink as a process of its own, outside mailgate's process tree (the bench
// counts the tree's CPU and memory, and its size as the number of workers), so the figures are
// mailgate's cost of tracing — building, batching, encoding and sending spans — and not the
// receiver's. The sink reads and discards each POST, answers 200, and exits with its mailgate.
import cluster from 'node:cluster';
import { spawn } from 'node:child_process';

const SINK = `
const http = require('node:http');
const owner = Number(process.argv[1]);
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
});
// An earlier start's sink may still hold the port for a moment (it exits once its mailgate is gone).
let tries = 0;
server.on('error', (e) => {
  if (e.code === 'EADDRINUSE' && ++tries < 100) setTimeout(() => server.listen(14318, '127.0.0.1'), 200);
  else process.exit(1);
});
server.listen(14318, '127.0.0.1');
setInterval(() => {
  try { process.kill(owner, 0); } catch { process.exit(0); }
}, 500).unref();
setInterval(() => {}, 1 << 30);
`;

// Workers inherit NODE_OPTIONS (this --import): one sink, from the primary. The sink itself gets
// neither NODE_OPTIONS nor this preload (else each sink would start another).
if (cluster.isPrimary && !process.env.MAILGATE_BENCH_OTLP_SINK) {
  const env = { ...process.env, NODE_OPTIONS: '', MAILGATE_BENCH_OTLP_SINK: '1' };
  // sh starts the sink in the background and exits at once: the sink is re-parented away from mailgate.
  spawn('/bin/sh', ['-c', '"$0" -e "$1" "$2" </dev/null >/dev/null 2>&1 &', process.execPath, SINK, String(process.pid)], { stdio: 'ignore', env }).unref();
}
