// A tiny authoritative DNS server on 127.0.0.1 for the bench: the machine has no outside network,
// and Haraka (per-connection rDNS) or any lookup mailgate still makes would otherwise wait for an
// unreachable resolver. It answers PTR 127.0.0.1 → localhost, A localhost → 127.0.0.1, and
// NXDOMAIN for every other name, at once — lookups cost their real CPU, never a timeout.
import { createSocket, type Socket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';

const NXDOMAIN = 3;

export interface DnsStub {
  readonly port: number;
  /** Queries answered so far. */
  queries(): number;
  close(): Promise<void>;
}

export async function startDnsStub(): Promise<DnsStub> {
  const sock: Socket = createSocket('udp4');
  let count = 0;
  sock.on('message', (msg, rinfo) => {
    let q;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    count++;
    const question = q.questions?.[0];
    const answers: Answer[] = [];
    const name = question?.name.toLowerCase() ?? '';
    if (question?.type === 'PTR' && name === '1.0.0.127.in-addr.arpa') {
      answers.push({ type: 'PTR', name: question.name, ttl: 300, data: 'localhost' });
    } else if (question?.type === 'A' && name === 'localhost') {
      answers.push({ type: 'A', name: question.name, ttl: 300, data: '127.0.0.1' });
    }
    const known = answers.length > 0 || name === 'localhost' || name === '1.0.0.127.in-addr.arpa';
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : NXDOMAIN),
      questions: q.questions ?? [],
      answers,
    });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    port: sock.address().port,
    queries: () => count,
    close: () => new Promise((resolve) => sock.close(() => resolve())),
  };
}
