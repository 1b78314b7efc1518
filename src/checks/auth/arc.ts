// ARC (RFC 8617): facts from mailauth's chain validation, the trusted-sealer check that lets a
// forwarder's arc=pass stand in for a DMARC pass it saw, and sealing what mailgate passes on.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSeal, getARChain } from 'mailauth/lib/arc/index.js';
import type { ARCData, ARCResult, ARCChainEntry, DKIMVerifyResult } from 'mailauth';
import type { ArcSealConfig } from '../../config/auth-schema.ts';
import type { ARC_RESULTS } from './auth-facts.ts';
import { splitField } from './auth-results-header.ts';
import { parseHeaders } from './mailauth-internals.ts';

export type ArcResult = (typeof ARC_RESULTS)[number];

export interface ArcSummary {
  result: ArcResult;
  instances: number;
  sealer: string;
  trustedSealer: boolean;
  upstreamDmarc: string;
}

type ChainEntry = ARCChainEntry & Record<string, { parsed?: Record<string, { value?: unknown }> } | undefined>;

const tagValue = (entry: ChainEntry | undefined, header: string, tag: string): string => {
  const v = entry?.[header]?.parsed?.[tag]?.value;
  return typeof v === 'string' ? v.toLowerCase().replace(/\.$/, '') : '';
};

/**
 * The chain as RFC 8617 parses it (mailauth strict mode: case-sensitive tags, instance syntax,
 * duplicate tags), even when DKIM runs lenient: mailauth's lenient chain parsing accepts malformed
 * ARC-Seals, and nothing is gained by that for ARC. The newest ARC-Message-Signature result and the
 * key cache come from the DKIM run that already verified it.
 */
export function strictArcData(dkim: DKIMVerifyResult): ARCData {
  const lenient = dkim.arc as (NonNullable<DKIMVerifyResult['arc']> & { keyCache?: unknown; lastEntry?: ARCChainEntry }) | undefined;
  const warnings: string[] = [];
  const data = { chain: [] as ARCChainEntry[], warnings } as ARCData & { warnings: string[] };
  try {
    const chain = getARChain(dkim.headers, { strict: true, warnings });
    if (chain && chain.length > 0) {
      data.chain = chain;
      const last = chain[chain.length - 1] as ARCChainEntry;
      const signature = lenient?.lastEntry?.i === last.i ? lenient.lastEntry.messageSignature : undefined;
      if (signature) last.messageSignature = signature;
      data.lastEntry = last;
    } else {
      (data as { chain: unknown }).chain = false;
    }
  } catch (err) {
    data.error = err as Error;
  }
  Object.defineProperty(data, 'keyCache', { value: lenient?.keyCache, enumerable: false, configurable: true, writable: true });
  return data;
}

/** d= or one of its parents is listed. */
export function isTrusted(domain: string, trusted: readonly string[]): boolean {
  const d = domain.toLowerCase().replace(/\.$/, '');
  return d !== '' && trusted.some((t) => d === t || d.endsWith(`.${t}`));
}

/**
 * Summarises the validation. `keyTrouble(name)` says whether a key lookup for `name` failed
 * temporarily: mailauth reports every ARC failure as fail ("permanent in the scope of ARC"), but
 * a chain we could not check because DNS did not answer is a temperror to us, never a pass or fail.
 */
export function summariseArc(res: ARCResult, trusted: readonly string[], keyTrouble: (name: string) => boolean): ArcSummary {
  const chain = (Array.isArray(res.chain) ? res.chain : []) as ChainEntry[];
  const newest = chain.length > 0 ? chain[chain.length - 1] : undefined;
  const sealer = tagValue(newest, 'arc-seal', 'd');
  let result: ArcResult = res.status.result === 'pass' ? 'pass' : res.status.result === 'fail' ? 'fail' : 'none';
  if (result === 'fail') {
    const keyNames = chain.flatMap((e) => ['arc-seal', 'arc-message-signature'].map((h) => `${tagValue(e, h, 's')}._domainkey.${tagValue(e, h, 'd')}`));
    if (keyNames.some(keyTrouble)) result = 'temperror';
  }
  const aar = res.authenticationResults as { dmarc?: { result?: unknown } } | undefined;
  const upstreamDmarc = result === 'pass' && typeof aar?.dmarc?.result === 'string' ? aar.dmarc.result.toLowerCase() : '';
  return {
    result,
    instances: typeof res.i === 'number' ? res.i : chain.length,
    sealer,
    trustedSealer: result === 'pass' && isTrusted(sealer, trusted),
    upstreamDmarc,
  };
}

/**
 * RFC 8617 section 7.2.1: a receiver may let a trusted intermediary's ARC results override a
 * DMARC failure. Only the newest set is trusted, because its seal is the only one whose message
 * signature we verified: an older set could have been copied from another message.
 */
export function arcOverridesDmarc(arc: ArcSummary): boolean {
  return arc.trustedSealer && arc.upstreamDmarc === 'pass';
}

export interface LoadedSealKey {
  domain: string;
  selector: string;
  privateKey: KeyObject;
  /** The key as PKCS#8 PEM, what mailauth takes: exported once here (an export costs ~90 µs). */
  pem: string;
  algorithm?: 'rsa-sha256' | 'ed25519-sha256';
}

/** Reads and checks the sealing key at startup, so a bad key is a config error, not a per-message one. */
export function loadSealKey(cfg: ArcSealConfig): LoadedSealKey {
  const pem = cfg.key.includes('-----BEGIN') ? cfg.key : readFileSync(cfg.key, 'utf8');
  const privateKey = createPrivateKey(pem);
  const out: LoadedSealKey = { domain: cfg.domain, selector: cfg.selector, privateKey, pem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  if (cfg.algorithm) out.algorithm = cfg.algorithm;
  return out;
}

/**
 * Makes our ARC set (AAR, AMS, AS) for a message whose chain validated as none or pass (or whose
 * newest seal still said pass, mailauth's `shouldSeal`). Returns the fields to prepend, top first,
 * or an error text.
 */
/** Why no ARC set can be added to this message (chain state, no body hash), or undefined. */
export function arcSealBlocker(dkim: DKIMVerifyResult, arcRes: ARCResult): string | undefined {
  const cv = arcRes.status.result;
  if (!(cv === 'none' || cv === 'pass' || arcRes.status.shouldSeal)) return `chain ${cv}`;
  const prepared = dkim.seal as (DKIMVerifyResult['seal'] & { bodyHash?: string }) | undefined;
  if (!prepared?.bodyHash) return 'no body hash';
  return undefined;
}

/**
 * The ARC set for the message as delivered: `finalHeader` is the header block after every edit
 * (our Received and Authentication-Results, a tagged Subject), so the ARC-Message-Signature covers
 * what the next hop receives. The body hash is the one computed while verifying (the body is
 * never edited).
 */
export async function createArcSet(
  dkim: DKIMVerifyResult,
  arcRes: ARCResult,
  authResults: string,
  key: LoadedSealKey,
  now: Date,
  strict: boolean,
  finalHeader: Buffer,
): Promise<{ fields: Array<{ name: string; value: string }>; error?: string }> {
  const cv = arcRes.status.result;
  const blocked = arcSealBlocker(dkim, arcRes);
  if (blocked) return { fields: [], error: blocked };
  const prepared = dkim.seal as DKIMVerifyResult['seal'] & { bodyHash: string };
  const seal: Parameters<typeof createSeal>[1]['seal'] = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.pem,
    cv,
    authResults,
    signTime: now,
    bodyHash: prepared.bodyHash,
  } as Parameters<typeof createSeal>[1]['seal'];
  if (key.algorithm) seal.algorithm = key.algorithm;
  const res = await createSeal(false, { headers: parseHeaders(finalHeader), arc: dkim.arc, seal, strict } as Parameters<typeof createSeal>[1]);
  if (res.errors.length > 0 || res.headers.length === 0) return { fields: [], error: res.errors.map((e) => e.err.message).join('; ') || 'not sealed' };
  return { fields: res.headers.map(splitField) };
}
