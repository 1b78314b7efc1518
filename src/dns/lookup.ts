// The DNS lookup contract checks use (mailauth's resolver signature); src/dns/resolver.ts implements
// it, tests pass a resolver pointed at a loopback zone server.
export interface DnsLookup {
  /** mailauth-compatible resolver: (name, rrtype) → records, throwing errors with `code` set. */
  resolve(name: string, rrtype: string): Promise<unknown[]>;
}
