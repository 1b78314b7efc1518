// A tiny authoritative DNS server on 127.0.0.1 for the bench: the machine has no outside network,
// and Haraka (per-connection rDNS) or mailgate's DNS checks (FCrDNS, SPF, DKIM, DMARC) would
// otherwise wait for an unreachable resolver. It serves the corpus's real authentication data —
// SPF for example.test with an include (authorising 127.0.0.0/8, the load generator's address),
// the DKIM key at bench._domainkey.example.test, DMARC p=reject — plus PTR 127.0.0.1 → localhost
// and A localhost → 127.0.0.1, and NXDOMAIN for every other name, at once: lookups cost their real
// CPU, never a timeout. It runs as its own process, so that answering DNS never delays the bench's
// own latency client (mailgate looks up DKIM and DMARC at the end of DATA, inside the measured
// interval). Run directly (`node bench/lib/dns-stub.ts [DKIM_PUBLIC_B64]`) it prints "port N" and
// serves until killed.
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
export async function startDnsStub(logDir: string, dkimPublicB64 = ''): Promise<DnsStub> {
  const svc = startService('dns-stub', process.execPath, [fileURLToPath(import.meta.url), dkimPublicB64], { logDir });
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const m = /^port (\d+)$/m.exec(readFileSync(svc.log, 'utf8'));
    if (m) return { port: Number(m[1]), svc };
    await new Promise((r) => setTimeout(r, 50));
  }
  await svc.stop();
  throw new Error(`DNS stub did not start:\n${svc.logTail()}`);
}

type Rr = { type: 'TXT'; data: string[] } | { type: 'A' | 'PTR' | 'MX'; data: string };

/** TXT strings are at most 255 bytes each (RFC 1035 3.3.14); a long record is several. */
const txt = (s: string): Rr => ({ type: 'TXT', data: s.match(/.{1,250}/g) ?? [''] });

/** The zone: name (lower case) → records. */
export function zone(dkimPublicB64: string): Map<string, Rr[]> {
  const z = new Map<string, Rr[]>([
    ['localhost', [{ type: 'A', data: '127.0.0.1' }]],
    ['1.0.0.127.in-addr.arpa', [{ type: 'PTR', data: 'localhost' }]],
    ['example.test', [txt('v=spf1 include:_spf.example.test -all'), { type: 'MX', data: 'mx.example.test' }]],
    ['_spf.example.test', [txt('v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.0/24 ip4:127.0.0.0/8 -all')]],
    ['mx.example.test', [{ type: 'A', data: '127.0.0.1' }]],
    ['_dmarc.example.test', [txt('v=DMARC1; p=reject; adkim=r; aspf=r')]],
  ]);
  if (dkimPublicB64) z.set('bench._domainkey.example.test', [txt(`v=DKIM1; k=rsa; p=${dkimPublicB64}`)]);
  return z;
}

function toAnswer(name: string, r: Rr): Answer {
  if (r.type === 'TXT') return { type: 'TXT', name, ttl: 300, data: r.data };
  if (r.type === 'MX') return { type: 'MX', name, ttl: 300, data: { preference: 10, exchange: r.data } };
  return { type: r.type, name, ttl: 300, data: r.data };
}

function serve(dkimPublicB64: string): void {
  const z = zone(dkimPublicB64);
  const sock = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    let q;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    const name = question?.name.toLowerCase() ?? '';
    const rrs = z.get(name);
    // a name we know but not this type: NODATA (NOERROR, no answers); any other name: NXDOMAIN
    const answers = question && rrs ? rrs.filter((r) => r.type === question.type).map((r) => toAnswer(question.name, r)) : [];
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (rrs ? 0 : NXDOMAIN),
      questions: q.questions ?? [],
      answers,
    });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  sock.bind(0, '127.0.0.1', () => process.stdout.write(`port ${sock.address().port}\n`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(process.argv[2] ?? '');
