// What the bytes of an attachment are, whatever its name and declared type say: file-type's
// signature detection, plus our own checks for the executable formats (PE, ELF, Mach-O) and the
// script/shortcut formats file-type does not know.
type FromBuffer = typeof import('file-type').fileTypeFromBuffer;

let fromBuffer: FromBuffer | undefined;
let loading: Promise<FromBuffer> | undefined;

/**
 * file-type (and strtok3 under it), imported when the content checks are built (the catalogue
 * awaits this, so a broken install fails start-up, not a message): a gateway with them off never
 * loads it.
 */
export function loadSniffer(): Promise<FromBuffer> {
  loading ??= import('file-type').then((m) => {
    fromBuffer = m.fileTypeFromBuffer;
    return fromBuffer;
  });
  return loading;
}

export type ExecutableKind = 'pe' | 'elf' | 'macho' | 'lnk' | '';

export interface Sniffed {
  /** Detected MIME type ("" when unknown, e.g. plain text or a script). */
  mime: string;
  /** Detected extension ("" when unknown). */
  ext: string;
  executable: ExecutableKind;
}

/** Executable magic numbers (PE "MZ", ELF, Mach-O thin and fat, Windows shortcut). */
export function executableKind(head: Buffer): ExecutableKind {
  if (head.length >= 2 && head[0] === 0x4d && head[1] === 0x5a) return 'pe';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x7f454c46) return 'elf';
  if (head.length >= 4) {
    const m = head.readUInt32BE(0);
    if (m === 0xfeedface || m === 0xfeedfacf || m === 0xcefaedfe || m === 0xcffaedfe) return 'macho';
    // 0xcafebabe is also a Java class file; Mach-O fat headers have a small arch count next.
    if (m === 0xcafebabe && head.length >= 8 && head.readUInt32BE(4) < 20) return 'macho';
  }
  if (head.length >= 20 && head.readUInt32LE(0) === 0x4c && head.readUInt32LE(4) === 0x00021401) return 'lnk';
  return '';
}

export async function sniff(head: Buffer): Promise<Sniffed> {
  const executable = executableKind(head);
  let mime = '';
  let ext = '';
  if (head.length > 0) {
    // Outside the try: a detector that can not be loaded is a failed check, not "unknown type".
    const detect = fromBuffer ?? (await loadSniffer());
    try {
      const t = await detect(head);
      if (t) {
        mime = t.mime;
        ext = t.ext;
      }
    } catch {
      // A detector bug on hostile bytes is "unknown type", not a failed message.
    }
  }
  if (!mime && executable === 'pe') {
    mime = 'application/x-msdownload';
    ext = 'exe';
  }
  if (!mime && executable === 'lnk') {
    mime = 'application/x-ms-shortcut';
    ext = 'lnk';
  }
  return { mime, ext, executable };
}

/** Types that are the same thing under different names (declared vs detected). */
const EQUIVALENT: Record<string, string> = {
  'application/x-zip-compressed': 'application/zip',
  'application/x-zip': 'application/zip',
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'application/x-pdf': 'application/pdf',
  'application/x-gzip': 'application/gzip',
  'application/x-msdos-program': 'application/x-msdownload',
  'application/x-dosexec': 'application/x-msdownload',
  'application/vnd.microsoft.portable-executable': 'application/x-msdownload',
};

/** Declared types that say nothing about the content. */
const GENERIC = new Set(['application/octet-stream', 'application/unknown', 'application/binary', 'binary/octet-stream', '']);

/** OOXML, ODF, JAR, APK, EPUB are zips: file-type may call them either. */
const ZIP_FAMILY = new Set(['application/zip', 'application/java-archive', 'application/epub+zip', 'application/vnd.android.package-archive']);

function canon(t: string): string {
  return EQUIVALENT[t] ?? t;
}

/** The declared type contradicts the bytes (a PDF that is a PE, a JPEG that is a zip). */
export function typeMismatch(declared: string, detected: string): boolean {
  if (!detected || GENERIC.has(declared)) return false;
  const d = canon(declared);
  const t = canon(detected);
  if (d === t) return false;
  const zipLike = (x: string) =>
    ZIP_FAMILY.has(x) || x.startsWith('application/vnd.openxmlformats') || x.startsWith('application/vnd.oasis') || x.startsWith('application/vnd.ms-');
  if (zipLike(d) && zipLike(t)) return false;
  // Old Office (OLE2) documents are detected as application/x-cfb.
  if (t === 'application/x-cfb' && (d.startsWith('application/vnd.ms-') || d === 'application/msword')) return false;
  // Same top-level type (image/png declared, image/gif sent) is sloppiness, not disguise.
  const top = (x: string) => x.slice(0, x.indexOf('/'));
  if (top(d) === top(t) && top(d) !== 'application') return false;
  return true;
}
