// Active content in documents: VBA macros in OLE2 Office files (cfb: the `VBA` / `_VBA_PROJECT`
// storages, MS-OVBA §2.2), macro-enabled OOXML (a `vbaProject.bin` member, found by the archive
// listing) and PDFs with JavaScript or an automatic action (ISO 32000 §12.6, §12.6.4.16).
import { createRequire } from 'node:module';
import type * as Cfb from 'cfb';

// cfb is required on the first OLE attachment, not imported: most messages have none, and a
// CommonJS package imported from ESM keeps its source twice (bench/HISTORY.md)
const lazyRequire = createRequire(import.meta.url);

const OLE_MAGIC = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);

export function isOle(head: Buffer): boolean {
  return head.length >= 8 && head.subarray(0, 8).equals(OLE_MAGIC);
}

export function isPdf(head: Buffer): boolean {
  // Readers accept "%PDF-" anywhere in the first 1024 bytes (a common evasion).
  return head.subarray(0, 1024).indexOf('%PDF-') >= 0;
}

export interface OleFacts {
  macro: boolean;
  /** An encrypted OOXML package inside OLE (`EncryptedPackage`) or RC4-encrypted: unreadable. */
  encrypted: boolean;
  /** The file could not be parsed (corrupt or truncated). */
  unreadable: boolean;
}

export function inspectOle(data: Buffer): OleFacts {
  try {
    const CFB = lazyRequire('cfb') as typeof Cfb;
    const cfb = CFB.read(data, { type: 'buffer' });
    let macro = false;
    let encrypted = false;
    for (const path of cfb.FullPaths) {
      const p = path.toLowerCase();
      if (p.includes('/vba/') || p.endsWith('/vba') || p.includes('_vba_project') || p.endsWith('/macros/') || p.includes('/macros/')) macro = true;
      if (p.endsWith('/encryptedpackage') || p.endsWith('/encryptioninfo')) encrypted = true;
    }
    return { macro, encrypted, unreadable: false };
  } catch {
    return { macro: false, encrypted: false, unreadable: true };
  }
}

/** Members of an OOXML zip that carry macros. */
export function isVbaMember(name: string): boolean {
  const n = name.toLowerCase();
  return n.endsWith('vbaproject.bin') || n.endsWith('vbadata.xml');
}

export interface PdfFacts {
  javascript: boolean;
  openAction: boolean;
  launch: boolean;
}

/**
 * Looks for the name tokens with Buffer.indexOf (linear, no regex). Names written with `#xx`
 * escapes (`/J#61vaScript`) are normalised first, within the scanned bytes only.
 */
export function inspectPdf(data: Buffer): PdfFacts {
  let buf = data;
  if (buf.indexOf('#') >= 0) buf = unescapePdfNames(buf);
  const has = (s: string) => buf.indexOf(s) >= 0;
  return {
    javascript: has('/JavaScript') || has('/JS ') || has('/JS(') || has('/JS<') || has('/JS\r') || has('/JS\n'),
    openAction: has('/OpenAction') || has('/AA'),
    launch: has('/Launch'),
  };
}

function hex(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x57;
  return -1;
}

/** A byte that starts a name ("/") or ends one (whitespace, "(", "<", "[", ">"). */
function nameState(b: number): -1 | 0 | 1 {
  if (b === 0x2f) return 1;
  if (b <= 0x20 || b === 0x28 || b === 0x3c || b === 0x5b || b === 0x3e) return 0;
  return -1;
}

/**
 * `#xx` escapes inside names (ISO 32000 §7.3.5) decoded. Jumps from "#" to "#" with indexOf and
 * copies the bytes between natively; whether a "#" is inside a name is read from the last
 * name-starting or name-ending byte before it (each byte looked at once, so linear).
 */
export function unescapePdfNames(data: Buffer): Buffer {
  const pieces: Buffer[] = [];
  let copied = 0;
  let inName = false;
  /** Bytes before this have been read for the name state. */
  let known = 0;
  for (let p = data.indexOf(0x23); p >= 0; ) {
    for (let k = p - 1; k >= known; k--) {
      const st = nameState(data[k] as number);
      if (st >= 0) {
        inName = st === 1;
        break;
      }
    }
    known = p + 1;
    if (inName && p + 2 < data.length) {
      const h = hex(data[p + 1] as number);
      const l = hex(data[p + 2] as number);
      if (h >= 0 && l >= 0) {
        if (p > copied) pieces.push(data.subarray(copied, p));
        pieces.push(Buffer.of((h << 4) | l));
        copied = p + 3;
        known = p + 3;
        p = data.indexOf(0x23, p + 3);
        continue;
      }
    }
    p = data.indexOf(0x23, p + 1);
  }
  if (pieces.length === 0) return data;
  if (copied < data.length) pieces.push(data.subarray(copied));
  return Buffer.concat(pieces);
}
