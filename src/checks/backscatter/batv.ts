// BATV (draft-levine-smtp-batv-01, the "prvs" scheme of Exchange, Barracuda and others): sign an
// envelope sender as `prvs=KDDDSSSSSS=user@domain` and verify the tag when a bounce comes back.
// K = key id digit, DDD = expiry day number mod 1000, SSSSSS = first 3 bytes of HMAC-SHA1, hex.
import { createHmac, timingSafeEqual } from 'node:crypto';

const DAY_MS = 86_400_000;
/** Longest address we look at (RFC 5321 4.5.3.1.3: a path is at most 256 octets). */
const MAX_ADDRESS = 256;

export interface BatvKey {
  /** The key number K, 0-9 (draft section 4.1): which secret signed a tag, so keys can rotate. */
  id: number;
  secret: string;
}

export interface BatvKeyring {
  /** Every key a tag may have been signed with (old ones stay here for max-age days). */
  keys: readonly BatvKey[];
  /** The key id new tags are signed with. */
  signId: number;
  /** Days a tag is valid after signing (the expiry day is today + this). */
  maxAgeDays: number;
}

export type BatvStatus = 'valid' | 'untagged' | 'malformed' | 'unknown-key' | 'bad-signature' | 'expired';

export interface BatvVerification {
  status: BatvStatus;
  /** The address without the tag (the address itself when untagged or malformed). */
  plain: string;
}

/** The day number the draft counts in: days since 1970-01-01 UTC. */
export function dayNumber(nowMs: number): number {
  return Math.floor(nowMs / DAY_MS);
}

function hash(secret: string, kddd: string, plain: string): string {
  // The draft hashes "K DDD orig-mailfrom"; we hash the address lower-cased because relays and
  // bouncing MTAs are known to change the case of the local part.
  return createHmac('sha1', secret)
    .update(kddd + plain.toLowerCase())
    .digest('hex')
    .slice(0, 6);
}

function findKey(ring: BatvKeyring, id: number): BatvKey | undefined {
  return ring.keys.find((k) => k.id === id);
}

/** Signs `address` (user@domain) with the ring's signing key; an already tagged address is kept. */
export function batvSign(address: string, ring: BatvKeyring, nowMs: number): string {
  if (parseTag(address)) return address;
  const key = findKey(ring, ring.signId);
  if (!key) throw new Error(`BATV signing key ${ring.signId} is not in the keyring`);
  const ddd = String((dayNumber(nowMs) + ring.maxAgeDays) % 1000).padStart(3, '0');
  const kddd = `${key.id}${ddd}`;
  return `prvs=${kddd}${hash(key.secret, kddd, address)}=${address}`;
}

interface ParsedTag {
  keyId: number;
  ddd: number;
  sig: string;
  plain: string;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x61 && c <= 0x66);

/**
 * Splits `prvs=KDDDSSSSSS=user@domain` (case-insensitive prefix, hex lower-cased) with plain
 * index checks. undefined: not tagged; 'malformed': starts with prvs= but is not a valid tag.
 */
function parseTag(address: string): ParsedTag | 'malformed' | undefined {
  if (address.length > MAX_ADDRESS || address.length < 5 || address.slice(0, 5).toLowerCase() !== 'prvs=') return undefined;
  const tag = address.slice(5, 15).toLowerCase();
  const rest = address.slice(16);
  if (tag.length !== 10 || address[15] !== '=' || rest.indexOf('@') < 1) return 'malformed';
  for (let i = 0; i < 10; i++) {
    const c = tag.charCodeAt(i);
    if (i < 4 ? !isDigit(c) : !isHex(c)) return 'malformed';
  }
  return { keyId: Number(tag[0]), ddd: Number(tag.slice(1, 4)), sig: tag.slice(4), plain: rest };
}

/** Whether an address carries a prvs= prefix at all (well-formed or not). */
export function isBatvTagged(address: string): boolean {
  return parseTag(address) !== undefined;
}

/** Verifies a bounce recipient against the keyring at `nowMs`. */
export function batvVerify(address: string, ring: BatvKeyring, nowMs: number): BatvVerification {
  const t = parseTag(address);
  if (t === undefined) return { status: 'untagged', plain: address };
  if (t === 'malformed') return { status: 'malformed', plain: address };
  const key = findKey(ring, t.keyId);
  if (!key) return { status: 'unknown-key', plain: t.plain };
  const expected = Buffer.from(hash(key.secret, `${t.keyId}${String(t.ddd).padStart(3, '0')}`, t.plain), 'latin1');
  const given = Buffer.from(t.sig, 'latin1');
  // Constant time: a timing oracle would let a forger find the signature byte by byte.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { status: 'bad-signature', plain: t.plain };
  // Day numbers wrap at 1000 (draft 4.1): days left until expiry, modulo 1000. An expired tag
  // shows up as a large remainder (yesterday = 999), as does one dated too far in the future.
  const left = (t.ddd - (dayNumber(nowMs) % 1000) + 1000) % 1000;
  if (left > ring.maxAgeDays) return { status: 'expired', plain: t.plain };
  return { status: 'valid', plain: t.plain };
}
