// Who may use the quarantine API and console: bearer tokens (API) or console users with scrypt
// hashes, console sessions in a signed HttpOnly SameSite=Strict cookie, and a CSRF token bound to
// the session that every state-changing form or cookie-authenticated call must carry.
import { createHmac, randomBytes } from 'node:crypto';
import type { AdminAuthConfig } from '../config/admin-schema.ts';
import { safeEqual, verifyPassword } from './password.ts';

export const SESSION_COOKIE = 'mg_session';
const DUMMY_HASH = `scrypt$16384$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}`;

export interface Principal {
  /** User name, or `token` for a bearer token. */
  name: string;
  via: 'token' | 'session';
  /** The session cookie value (its CSRF token is derived from it). */
  session?: string;
}

function b64(s: string): string {
  return Buffer.from(s).toString('base64url');
}

export class AdminAuth {
  readonly cfg: AdminAuthConfig | undefined;
  readonly #key: Buffer;
  readonly #now: () => number;
  constructor(cfg: AdminAuthConfig | undefined, now: () => number = Date.now) {
    this.cfg = cfg;
    this.#now = now;
    // Sessions live as long as the process: a restart logs everyone out, which is acceptable.
    this.#key = randomBytes(32);
  }

  get enabled(): boolean {
    return !!this.cfg && (this.cfg.tokens.length > 0 || this.cfg.users.length > 0);
  }

  #mac(s: string): string {
    return createHmac('sha256', this.#key).update(s).digest('base64url');
  }

  /** `Authorization: Bearer …` against the configured tokens (constant-time, every token tried). */
  bearer(header: string | undefined): Principal | undefined {
    if (!this.cfg || !header) return undefined;
    if (header.length > 1024 || !header.toLowerCase().startsWith('bearer ')) return undefined;
    const given = header.slice(7).trim();
    let ok = false;
    for (const t of this.cfg.tokens) ok = safeEqual(given, t) || ok;
    return ok ? { name: 'token', via: 'token' } : undefined;
  }

  /** Checks a console login: a user's password, or user `token` with a bearer token. */
  async login(user: string, password: string): Promise<string | undefined> {
    if (!this.cfg || user.length > 64 || password.length > 1024) return undefined;
    let ok = false;
    const u = this.cfg.users.find((x) => safeEqual(x.name, user));
    // Always run one scrypt so a missing user takes as long as a wrong password.
    ok = await verifyPassword(password, u?.password ?? DUMMY_HASH);
    if (!u) ok = false;
    if (!ok && user === 'token') ok = this.bearer(`Bearer ${password}`) !== undefined;
    if (!ok) return undefined;
    const payload = b64(JSON.stringify({ u: user, exp: this.#now() + this.cfg.session_ttl, n: randomBytes(9).toString('base64url') }));
    return `${payload}.${this.#mac(payload)}`;
  }

  /** The principal of a session cookie value, if its signature and expiry are good. */
  session(cookie: string | undefined): Principal | undefined {
    if (!cookie || cookie.length > 1024) return undefined;
    const dot = cookie.indexOf('.');
    if (dot <= 0) return undefined;
    const payload = cookie.slice(0, dot);
    if (!safeEqual(cookie.slice(dot + 1), this.#mac(payload))) return undefined;
    try {
      const p = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { u: string; exp: number };
      if (typeof p.u !== 'string' || typeof p.exp !== 'number' || this.#now() >= p.exp) return undefined;
      return { name: p.u, via: 'session', session: cookie };
    } catch {
      return undefined;
    }
  }

  /** The CSRF token of a session (forms carry it; a cross-site page cannot read it). */
  csrfFor(session: string): string {
    return this.#mac(`csrf:${session}`);
  }

  checkCsrf(p: Principal, given: string | undefined): boolean {
    if (p.via === 'token') return true; // a bearer header is never sent by a browser on its own
    if (!p.session || !given) return false;
    return safeEqual(given, this.csrfFor(p.session));
  }

  /** A CSRF token for the login form, bound to a pre-login cookie (login CSRF). */
  loginCsrf(nonce: string): string {
    return this.#mac(`login:${nonce}`);
  }
}

/** Same-origin check for state-changing requests: Origin (or Referer) must name this host. */
export function sameOrigin(origin: string | undefined, referer: string | undefined, host: string | undefined): boolean {
  const src = origin ?? referer;
  if (!src) return true; // non-browser clients send neither; the CSRF token still applies
  if (src === 'null' || !host) return false;
  try {
    return new URL(src).host === host;
  } catch {
    return false;
  }
}
