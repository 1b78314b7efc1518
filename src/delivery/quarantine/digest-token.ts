// Signed, expiring, single-use release links for digests: base64url(payload).base64url(HMAC-SHA256).
// The payload names the entry and the recipient; the nonce is recorded on use (in the index,
// shared by every instance), so a link works once; expiry is checked before anything else.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface TokenPayload {
  /** Entry id. */
  id: string;
  /** The recipient the digest went to (the release goes to them only). */
  rcpt: string;
  /** Expiry, ms since the epoch. */
  exp: number;
  nonce: string;
}

export function signToken(key: string | Buffer, p: Omit<TokenPayload, 'nonce'> & { nonce?: string }): string {
  const payload: TokenPayload = { id: p.id, rcpt: p.rcpt, exp: p.exp, nonce: p.nonce ?? randomBytes(12).toString('base64url') };
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const mac = createHmac('sha256', key).update(body).digest('base64url');
  return `${body}.${mac}`;
}

export type TokenCheck = { ok: true; payload: TokenPayload } | { ok: false; why: 'malformed' | 'bad signature' | 'expired' };

/** Verifies signature (constant time) and expiry; single use is the caller's (index) job. */
export function verifyToken(key: string | Buffer, token: string, now = Date.now()): TokenCheck {
  if (token.length > 2048) return { ok: false, why: 'malformed' };
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return { ok: false, why: 'malformed' };
  const body = token.slice(0, dot);
  const mac = Buffer.from(token.slice(dot + 1), 'base64url');
  const want = createHmac('sha256', key).update(body).digest();
  if (mac.length !== want.length || !timingSafeEqual(mac, want)) return { ok: false, why: 'bad signature' };
  let p: TokenPayload;
  try {
    p = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as TokenPayload;
  } catch {
    return { ok: false, why: 'malformed' };
  }
  if (typeof p.id !== 'string' || typeof p.rcpt !== 'string' || typeof p.exp !== 'number' || typeof p.nonce !== 'string')
    return { ok: false, why: 'malformed' };
  if (now >= p.exp) return { ok: false, why: 'expired' };
  return { ok: true, payload: p };
}
