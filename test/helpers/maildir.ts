// Reads what the real Postfix backend delivered: Maildirs under MAIL_BASE (the private Postfix that
// `npm test` starts exports it; a test with its own instance passes `pf.mailBase` instead).
// Tests put a unique token in each message and look for files containing it.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export const MAIL_BASE = process.env.MAIL_BASE ?? '/var/tmp/mailgate-test/mail';

export function token(prefix = 'tok'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** All delivered messages (any user) containing `needle`. */
export function findDelivered(needle: string, user?: string): Array<{ user: string; file: string; content: Buffer }> {
  const out: Array<{ user: string; file: string; content: Buffer }> = [];
  if (!existsSync(MAIL_BASE)) return out;
  const users = user ? [user] : readdirSync(MAIL_BASE);
  for (const u of users) {
    for (const sub of ['new', 'cur']) {
      const dir = join(MAIL_BASE, u, sub);
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) {
        const p = join(dir, f);
        const content = readFileSync(p);
        if (content.includes(needle)) out.push({ user: u, file: p, content });
      }
    }
  }
  return out;
}

/** Polls until `count` messages with `needle` arrived (Postfix delivers asynchronously). */
export async function waitDelivered(needle: string, count = 1, timeoutMs = 15_000, user?: string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = findDelivered(needle, user);
    if (found.length >= count || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits a little and returns what arrived: for asserting that nothing (more) arrives. */
export async function settle(needle: string, ms = 1500) {
  await new Promise((r) => setTimeout(r, ms));
  return findDelivered(needle);
}
