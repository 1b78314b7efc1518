// Address / CIDR list matching with node:net's BlockList (IPv4, IPv6, and IPv4-mapped forms).
import net from 'node:net';

const cache = new WeakMap<readonly string[], net.BlockList>();

export function toBlockList(entries: readonly string[]): net.BlockList {
  let bl = cache.get(entries);
  if (bl) return bl;
  bl = new net.BlockList();
  for (const e of entries) {
    const [addr = '', bits] = e.split('/');
    const type = net.isIPv6(addr) ? 'ipv6' : 'ipv4';
    if (bits === undefined) bl.addAddress(addr, type);
    else bl.addSubnet(addr, Number(bits), type);
  }
  cache.set(entries, bl);
  return bl;
}

export function ipInList(ip: string, entries: readonly string[]): boolean {
  const type = net.isIPv6(ip) ? 'ipv6' : net.isIPv4(ip) ? 'ipv4' : undefined;
  if (!type) return false;
  return toBlockList(entries).check(ip, type);
}
