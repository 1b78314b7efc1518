// A tiny authoritative DNS server on 127.0.0.1 for the bench: the machine has no outside network,
// and Haraka (per-connection rDNS) or mailgate's DNS checks (FCrDNS, SPF, DMARC) would otherwise
// wait for an unreachable resolver. It answers PTR 127.0.0.1 → localhost, A localhost →
// 127.0.0.1, and NXDOMAIN for every other name, at once — lookups cost their real CPU, never a
// timeout. It runs as its own process, so that answering DNS never delays the bench's own latency
// client (mailgate looks up DMARC at the end of DATA, inside the measured interval).
// Run directly (`node bench/lib/dns-stub.ts`) it prints "port N" and serves until killed.
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { startService, type Service } from './service.ts';

const NXDOMAIN = 3;

export interface DnsStub {
  readonly port: number;
  readonly svc: Service;
}

/** Starts the stub as a child process and waits for its port. */
export async function startDnsStub(logDir: string): Promise<DnsStub> {
  const svc = startService('dns-stub', process.execPath, [fileURLToPath(import.meta.url)], { logDir });
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const m = /^port (\d+)$/m.exec(readFileSync(svc.log, 'utf8'));
    if (m) return { port: Number(m[1]), svc };
    await new Promise((r) => setTimeout(r, 50));
  }
  await svc.stop();
  throw new Error(`DNS stub did not start:\n${svc.logTail()}`);
}

function serve(): void {
  const sock = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    let q;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    const answers: Answer[] = [];
    const name = question?.name.toLowerCase() ?? '';
    if (question?.type === 'PTR' && name === '1.0.0.127.in-addr.arpa') {
      answers.push({ type: 'PTR', name: question.name, ttl: 300, data: 'localhost' });
    } else if (question?.type === 'A' && name === 'localhost') {
      answers.push({ type: 'A', name: question.name, ttl: 300, data: '127.0.0.1' });
    }
    // a name we know but not this type: NODATA (NOERROR, no answers); any other name: NXDOMAIN
    const known = name === 'localhost' || name === '1.0.0.127.in-addr.arpa';
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : NXDOMAIN),
      questions: q.questions ?? [],
      answers,
    });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  sock.bind(0, '127.0.0.1', () => process.stdout.write(`port ${sock.address().port}\n`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve();
