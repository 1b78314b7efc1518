// The DNS lookup contract checks use (mailauth's resolver signature); src/dns/resolver.ts implements
// it, tests pass a resolver pointed at a loopback zone server.
export interface DnsLookup {
  /** mailauth-compatible resolver: (name, rrtype) → records, throwing errors with `code` set. */
  resolve(name: string, rrtype: string): Promise<unknown[]>;
  /**
   * Optional: an object standing for the cached answer to (name, rrtype), the same object for as
   * long as that answer is cached, undefined when there is none (src/dns/resolver.ts).
   */
  cached?(name: string, rrtype: string): object | undefined;
}
