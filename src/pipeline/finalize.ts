// The finalize step, after the verdict and before delivery: applies the collected edits once, in a
// fixed order — distrusted headers removed, our headers added on top, Subject tagged — and only
// then runs the signers over the result, so a seal or signature covers exactly what is delivered.
import type { Edits } from './check.ts';
import { foldHeader, isOrphanContinuation, type HeaderField } from '../message/headers.ts';

export interface FinalizeInput {
  /** The message's header fields as received. */
  fields: readonly HeaderField[];
  /** The received header block ended with the empty line (else the body is empty or absent). */
  headerTerminated: boolean;
  /** Edits from checks, then from the rules (verdict): merged by the core. */
  edits: Edits;
  /** Fields that go above everything else (our Received trace field, RFC 5321 4.4). */
  trace: ReadonlyArray<{ name: string; value: string }>;
  /**
   * The bytes `fields` were parsed from (the spool's header block). When no field is dropped or
   * changed they are delivered as they are, instead of being rebuilt from each field's `raw`.
   */
  original?: Buffer;
}

export interface FinalizedHeader {
  /** The header block to deliver, ending with the empty line when the original had one. */
  block: Buffer;
  /** Fields added on top, in order from the top (for fronts that edit in place: milter). */
  added: Array<{ name: string; value: string }>;
  /** Original fields removed, with their index among fields of the same name (1-based). */
  removed: Array<{ name: string; index: number }>;
  /** The new Subject value when it was tagged (original field index 1). */
  subject?: string;
}

export async function finalizeHeader(input: FinalizeInput): Promise<FinalizedHeader> {
  const { edits } = input;
  const removed: FinalizedHeader['removed'] = [];
  const seen = new Map<string, number>();
  let body = '';
  let subject: string | undefined;
  /** Every field kept as it came: `body` is then `original` up to its final empty line. */
  let unchanged = true;
  let rawLength = 0;
  for (const f of input.fields) {
    const lname = f.name.toLowerCase();
    const index = (seen.get(lname) ?? 0) + 1;
    seen.set(lname, index);
    // A block that opens with whitespace would read as a continuation of the last field we put on
    // top (RFC 5322 2.2.3 unfolding), e.g. extending our Authentication-Results with
    // "dkim=pass header.d=paypal.com": such an orphan continuation belongs to no field and is
    // dropped (issue 14, item 2).
    if (isOrphanContinuation(f)) {
      unchanged = false;
      continue;
    }
    if (f.name && edits.removeHeaders.some((r) => r(f.name, f.value))) {
      removed.push({ name: f.name, index });
      unchanged = false;
      continue;
    }
    if (lname === 'subject' && index === 1 && edits.tagSubject !== undefined && !f.value.startsWith(edits.tagSubject)) {
      // Keep the original bytes after the colon (folding, encoded words) and put the tag first.
      // After the colon itself, not name.length + 1: "Subject : x" (RFC 5322 4.5.8) has WSP before
      // it; "Subject:x" has none after it, so the tag needs its own space there.
      subject = `${edits.tagSubject} ${f.value}`;
      unchanged = false;
      const after = f.raw.slice(f.raw.indexOf(':') + 1);
      body += `${f.name}: ${edits.tagSubject}${/^[ \t\r]/.test(after) ? '' : ' '}${after}`;
      continue;
    }
    body += f.raw;
    rawLength += f.raw.length;
  }
  const ours = [...input.trace, ...edits.addHeaders];
  let top = '';
  for (const h of ours) top += foldHeader(h.name, h.value);
  // The fields' raw texts are consecutive latin1 slices of `original` from its start (one char a
  // byte), so equal lengths mean `original` is exactly what the rebuild below would give.
  const { original } = input;
  const asIs = unchanged && original !== undefined && rawLength + (input.headerTerminated ? 2 : 0) === original.length;
  let block = asIs
    ? Buffer.concat([Buffer.from(top, 'utf8'), original])
    : Buffer.concat([Buffer.from(top, 'utf8'), Buffer.from(body, 'latin1'), input.headerTerminated ? Buffer.from('\r\n') : Buffer.alloc(0)]);
  const added = [...ours];
  for (const s of [...edits.signers].sort((a, b) => a.order - b.order)) {
    const fields = await s.sign(block);
    if (fields.length === 0) continue;
    let head = '';
    for (const h of fields) head += foldHeader(h.name, h.value);
    block = Buffer.concat([Buffer.from(head, 'utf8'), block]);
    added.unshift(...fields);
  }
  const out: FinalizedHeader = { block, added, removed };
  if (subject !== undefined) out.subject = subject;
  return out;
}

/** Merges edits of the same transaction (checks first, then rules): later lists append. */
export function mergeEdits(into: Edits, from: Partial<Edits>): void {
  if (from.addHeaders) into.addHeaders.push(...from.addHeaders);
  if (from.removeHeaders) into.removeHeaders.push(...from.removeHeaders);
  if (from.tagSubject !== undefined && into.tagSubject === undefined) into.tagSubject = from.tagSubject;
  if (from.rcptRewrites) for (const [k, v] of from.rcptRewrites) into.rcptRewrites.set(k, v);
  if (from.senderRewrite !== undefined) into.senderRewrite = from.senderRewrite;
  if (from.signers) into.signers.push(...from.signers);
}
