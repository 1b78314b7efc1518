// Loaded with `node --require` (NODE_OPTIONS) into every gateway the bench starts (mailgate and
// Haraka, cluster workers included). Changes nothing that is measured:
//  - BENCH_DNS_PORT: every c-ares lookup (dns.resolve*, dns.reverse, dns.promises, any new
//    Resolver) goes to the bench's DNS stub on 127.0.0.1 instead of /etc/resolv.conf, which is
//    unreachable here; dns.lookup (getaddrinfo, /etc/hosts) is untouched.
//  - SIGWINCH runs a full GC, so memory samples are not dominated by uncollected garbage, and
//    (BENCH_MEM_DIR) writes process.memoryUsage() to BENCH_MEM_DIR/<pid>.json.
'use strict';
const dns = require('node:dns');
const port = process.env.BENCH_DNS_PORT;
if (port) {
  const servers = [`127.0.0.1:${port}`];
  dns.setServers(servers);
  dns.promises.setServers(servers);
  for (const mod of [dns, dns.promises]) {
    const Orig = mod.Resolver;
    mod.Resolver = class BenchResolver extends Orig {
      constructor(...args) {
        super(...args);
        this.setServers(servers);
      }
    };
  }
}
require('node:v8').setFlagsFromString('--expose-gc');
const gc = require('node:vm').runInNewContext('gc');
const memDir = process.env.BENCH_MEM_DIR;
process.on('SIGWINCH', () => {
  gc();
  gc();
  // the JS heap's own view, next to the RSS the bench reads from /proc
  if (memDir) require('node:fs').writeFileSync(`${memDir}/${process.pid}.json`, JSON.stringify(process.memoryUsage()));
});
if (process.env.BENCH_MEMDUMP && memDir) require('./memdump.cjs');
