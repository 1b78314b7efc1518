// Typed access to the parts of mailauth its package root does not export: DMARC evaluation with
// the per-signature alignment set (lib/dmarc), and the RFC 8601 resinfo/authserv-id formatters
// (lib/tools). mailauth has no `exports` map, so these paths are reachable; pinned to 7.1.0.
import { createRequire } from 'node:module';
import type { KeyObject } from 'node:crypto';
import type { ARCResult, DMARCResult } from 'mailauth';

const require = createRequire(import.meta.url);

export interface DmarcEvaluation {
  /** false when DMARC could not be evaluated (see `reason`). */
  response: DMARCResult | false;
  /** Why there is no response: 'no-author-domain', 'multiple-from-fields', 'multiple-author-domains', 'invalid-author-domain'. */
  reason?: string;
  /** Signing domains (formatted) whose passing signature aligned. */
  dkimAligned?: Set<string>;
}

export interface DmarcInput {
  headerFrom: string[];
  fromFields: number;
  spfDomains: string[];
  dkimDomains: Array<{ id?: string; domain: string; aligned?: string | false; underSized?: number }>;
  arcResult?: ARCResult;
  resolver: (name: string, rrtype: string) => Promise<unknown>;
  strict?: boolean;
}

export interface AuthStatusLike {
  result: string;
  comment?: string | false;
  policy?: Record<string, unknown>;
  smtp?: Record<string, unknown>;
  header?: Record<string, unknown>;
  body?: Record<string, unknown>;
  underSized?: number;
}

const dmarcModule = require('mailauth/lib/dmarc/index.js') as { evaluateDmarc: (opts: DmarcInput) => Promise<DmarcEvaluation> };
/** The DKIM verifier class behind dkimVerify() (a Writable; dkim-feed.ts calls its methods directly). */
export const DkimVerifier = (require('mailauth/lib/dkim/dkim-verifier.js') as { DkimVerifier: new (options: unknown) => object }).DkimVerifier;
const tools = require('mailauth/lib/tools.js') as {
  formatAuthHeaderRow: (method: string, status: AuthStatusLike, options?: { strict?: boolean }) => string;
  formatAuthservId: (id: string, strict?: boolean) => string;
  formatDomain: (domain: string) => string;
  parseHeaders: (buf: Buffer) => ParsedHeaders;
  getPublicKey: (
    type: string,
    name: string,
    minBitLength: number | undefined,
    resolver: (name: string, rrtype: string) => Promise<unknown>,
    options?: KeyOptions,
  ) => Promise<PublicKeyInfo>;
  toALabel: (domain: string) => string;
};

/** Options of mailauth's key lookups (getPublicKey, the per-message key cache). */
export interface KeyOptions {
  strict?: boolean;
  hashAlgo?: string;
}

/** What mailauth's getPublicKey returns for a usable DKIM/ARC key record. */
export interface PublicKeyInfo {
  /** PEM text (mailauth's form); a KeyObject works wherever it is used (crypto.verify). */
  publicKey: string | KeyObject;
  rr: string;
  modulusLength: number;
  keyType: string;
  flags: string[];
  testing: boolean;
  warnings: string[];
}

/** Fetches and checks a DKIM key record (RFC 6376 3.6.1, RFC 8463); throws with `code` when unusable. */
export const getPublicKey = tools.getPublicKey;
/** A U-label domain as an A-label (RFC 8616 section 3), as mailauth looks names up. */
export const toALabel = tools.toALabel;

/** mailauth's parsed header block (what createSeal signs over). */
export interface ParsedHeaders {
  parsed: unknown[];
  original: Buffer;
}

/** Parses a header block the way mailauth's verifiers do, for sealing the block as delivered. */
export const parseHeaders = tools.parseHeaders;

export const evaluateDmarc = dmarcModule.evaluateDmarc;
/** One RFC 8601 resinfo, e.g. `dkim=pass header.i=@example.com header.s=s1`, values quoted as needed. */
export const formatAuthHeaderRow = tools.formatAuthHeaderRow;
/** The authserv-id as a token (A-label) or quoted-string (RFC 8601 section 2.5). */
export const formatAuthservId = tools.formatAuthservId;
export const formatDomain = tools.formatDomain;
