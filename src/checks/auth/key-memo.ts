// DKIM/ARC public keys parsed once per key record instead of once per message: mailauth's key
// cache lives for one message, and turning a record into a key (tag-list parse, a base64 check
// through joi, createPublicKey, a PEM export) costs ~30 µs, and crypto.verify given that PEM text
// parses it again (~14 µs for RSA 2048). The DNS lookup still happens for every message (through
// the resolver and its cache, so TTLs, troubles and the key-size guard apply); only the parse of
// an identical record, for the same options, is remembered.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { getPublicKey, type KeyOptions, type PublicKeyInfo, toALabel } from './mailauth-internals.ts';

type Resolve = (name: string, rrtype: string) => Promise<unknown>;

/** Bounded: key records come from the DNS answers of arbitrary senders. */
const MAX_KEYS = 1024;
const parsed = new Map<string, PublicKeyInfo>();

/** The key record text as getPublicKey reads it: the first TXT record, joined, without whitespace. */
const recordText = (list: unknown): string =>
  Array.isArray(list)
    ? ([] as unknown[])
        .concat(list[0] ?? [])
        .join('')
        .replace(/\s+/g, '')
    : '';

/** A copy per caller, so nothing one message's verification touches is shared with another's. */
const copy = (k: PublicKeyInfo): PublicKeyInfo => ({ ...k, flags: [...k.flags], warnings: [...k.warnings] });

/**
 * The PEM text as a KeyObject that still prints as that text: crypto.verify takes it without
 * parsing, and mailauth's `result.publicKey = publicKey.toString()` stays what it was.
 */
function keyObjectOf(pem: string): KeyObject {
  const key = createPublicKey(pem);
  Object.defineProperty(key, 'toString', { value: () => pem, enumerable: false });
  return key;
}

async function lookup(resolve: Resolve, type: string, name: string, minBitLength: number | undefined, options: KeyOptions): Promise<PublicKeyInfo> {
  const list = await resolve(toALabel(name), 'TXT');
  const memoKey = [type, options.strict === true, minBitLength ?? '', options.hashAlgo ?? '', recordText(list)].join(':');
  const known = parsed.get(memoKey);
  if (known) return copy(known);
  // mailauth's own checks, over the answer we already have (errors are not remembered).
  const info = await getPublicKey(type, name, minBitLength, async () => list, options);
  const stored: PublicKeyInfo = { ...info, publicKey: typeof info.publicKey === 'string' ? keyObjectOf(info.publicKey) : info.publicKey };
  if (parsed.size >= MAX_KEYS) parsed.delete(parsed.keys().next().value as string);
  parsed.set(memoKey, stored);
  return copy(stored);
}

/**
 * A drop-in for mailauth's per-message createKeyCache(resolver): one lookup per question for the
 * message (same key as mailauth's), each one parsing through the shared memo.
 */
export function createKeyCache(resolve: Resolve): {
  resolver: Resolve;
  get(type: string, name: string, minBitLength?: number, options?: KeyOptions): Promise<PublicKeyInfo>;
} {
  const perMessage = new Map<string, Promise<PublicKeyInfo>>();
  return {
    resolver: resolve,
    get(type, name, minBitLength, options = {}) {
      const key = [options.strict === true, minBitLength || '', options.hashAlgo || '', name].join(':');
      let p = perMessage.get(key);
      if (!p) {
        p = lookup(resolve, type, name, minBitLength, options);
        // as mailauth's: a prefetched lookup may fail before anyone waits for it
        p.catch(() => false);
        perMessage.set(key, p);
      }
      return p;
    },
  };
}

/** For tests: forget every parsed key. */
export function clearKeyMemo(): void {
  parsed.clear();
}
