// Attachment file-name normalisation: what a mail client shows versus what Windows runs. Removes
// bidi overrides (RTLO U+202E), zero-width and control characters, trailing dots and spaces,
// folds compatibility forms (NFKC), and splits the extensions (`invoice.pdf.exe` → pdf, exe).

/** Extensions Windows (or a browser) executes, or that mount/contain executables. */
export const RISKY_EXTENSIONS: readonly string[] = [
  'exe',
  'com',
  'scr',
  'pif',
  'bat',
  'cmd',
  'cpl',
  'msi',
  'msp',
  'msc',
  'dll',
  'sys',
  'reg',
  'js',
  'jse',
  'vbs',
  'vbe',
  'wsf',
  'wsh',
  'wsc',
  'ps1',
  'psm1',
  'hta',
  'lnk',
  'inf',
  'scf',
  'iso',
  'img',
  'vhd',
  'vhdx',
  'one',
  'jar',
  'appx',
  'msix',
  'application',
  'gadget',
  'chm',
  'url',
  'xll',
];

export interface NormalizedName {
  /** The name as a user would see it without tricks: lower case, NFKC, cleaned. */
  name: string;
  /** Every extension after the base name, in order (at most 4), e.g. ['pdf', 'exe']. */
  extensions: string[];
  /** The last extension ("" when none). */
  extension: string;
  /** The name hid something: bidi/zero-width/control characters, or trailing dots/spaces. */
  hidden: boolean;
  /** A decoy extension before a risky one: `invoice.pdf.exe`, `photo.jpg   .scr`. */
  doubleExtension: boolean;
  risky: boolean;
}

function isHiddenChar(cp: number): boolean {
  return (
    cp < 0x20 ||
    cp === 0x7f ||
    (cp >= 0x200b && cp <= 0x200f) || // zero-width space/joiners, LRM/RLM
    (cp >= 0x202a && cp <= 0x202e) || // bidi embeddings and overrides (RTLO)
    (cp >= 0x2066 && cp <= 0x2069) || // bidi isolates
    cp === 0xfeff ||
    cp === 0x180e ||
    cp === 0x061c
  );
}

/** Extension-like: 1–10 letters or digits. */
function isExtension(s: string): boolean {
  if (s.length < 1 || s.length > 10) return false;
  for (const c of s) if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

/** One character class, anchored: linear, no backtracking. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

export function normalizeFileName(raw: string): NormalizedName {
  const input = raw.slice(0, 1024);
  let hidden = false;
  let cleaned = '';
  // Printable ASCII (most names) is its own NFKC form and holds no hidden character: no per-character pass.
  if (PRINTABLE_ASCII.test(input)) cleaned = input;
  else {
    for (const ch of input.normalize('NFKC')) {
      if (isHiddenChar(ch.codePointAt(0) ?? 0)) hidden = true;
      else cleaned += ch;
    }
  }
  // Windows ignores trailing dots and spaces: "evil.exe. . " runs as evil.exe.
  let end = cleaned.length;
  while (end > 0 && (cleaned[end - 1] === '.' || cleaned[end - 1] === ' ')) end--;
  if (end !== cleaned.length) hidden = true;
  // Only the last path segment names the file (zip members and broken clients send paths).
  let name = cleaned.slice(0, end).toLowerCase();
  const slash = Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\'));
  if (slash >= 0) name = name.slice(slash + 1);
  const segs = name.split('.');
  const extensions: string[] = [];
  // Segments after the base name, trimmed (a run of spaces before the real extension is a trick too).
  for (let i = segs.length - 1; i >= 1 && extensions.length < 4; i--) {
    const seg = (segs[i] ?? '').trim();
    if (!isExtension(seg)) break;
    extensions.unshift(seg);
  }
  const extension = extensions[extensions.length - 1] ?? '';
  const risky = RISKY_EXTENSIONS.includes(extension);
  const doubleExtension = risky && extensions.length >= 2 && !RISKY_EXTENSIONS.includes(extensions[extensions.length - 2] ?? '');
  return { name, extensions, extension, hidden, doubleExtension, risky };
}
