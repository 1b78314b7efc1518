// The `attachments` check: for every attachment the MIME walk found (and every member of the
// archives among them, recursively), the normalised name and extensions, declared vs detected
// type, executable formats, macros and active PDF content — as facts rules can match.
import type { Check, MessageView } from '../../pipeline/check.ts';
import type { FactRecord, FactSpec } from '../../pipeline/facts.ts';
import type { MimeWalk, WalkLimits } from '../../message/mime-walk.ts';
import { normalizeFileName } from './file-name.ts';
import { sniff, typeMismatch } from './file-sniff.ts';
import { archiveFormat, DEFAULT_ARCHIVE_LIMITS, listArchive, type ArchiveBudget, type ArchiveLimits } from './archive-inspect.ts';
import { inspectOle, inspectPdf, isOle, isPdf, isVbaMember } from './document-inspect.ts';
import { derivedOf, walkOf } from './walk-result.ts';

const FILE_FIELDS = [
  'name',
  'extension',
  'extensions',
  'declared_type',
  'detected_type',
  'size',
  'executable',
  'executable_type',
  'double_extension',
  'hidden_name',
  'type_mismatch',
  'macro',
  'pdf_javascript',
  'pdf_open_action',
  'encrypted',
  'container',
  'in_message',
  'source',
] as const;

export const attachmentFacts: readonly FactSpec[] = [
  {
    name: 'attachment.count',
    stage: 'data',
    type: 'number',
    description: 'Attachments (MIME parts with a file name or non-text content, and uuencoded files), archive members not counted',
  },
  {
    name: 'attachment.names',
    stage: 'data',
    type: 'string[]',
    description: 'Normalised file names (lower case, NFKC, bidi/zero-width characters and trailing dots/spaces removed), archive members included',
  },
  { name: 'attachment.extensions', stage: 'data', type: 'string[]', description: 'Last extension of every file name (e.g. exe), archive members included' },
  {
    name: 'attachment.detected_types',
    stage: 'data',
    type: 'string[]',
    description: 'MIME types detected from the bytes (file-type), archive members included',
  },
  {
    name: 'attachment.executable',
    stage: 'data',
    type: 'boolean',
    description: 'Some file is an executable (PE, ELF, Mach-O, Windows shortcut) or has an executable/script extension, also inside archives',
  },
  {
    name: 'attachment.executable_types',
    stage: 'data',
    type: 'string[]',
    description: 'What made files executable: pe, elf, macho, lnk or the risky extension (js, vbs, iso, ...)',
  },
  { name: 'attachment.double_extension', stage: 'data', type: 'boolean', description: 'A decoy extension before a risky one (invoice.pdf.exe)' },
  {
    name: 'attachment.hidden_name',
    stage: 'data',
    type: 'boolean',
    description: 'A file name hides its real end: RTLO or other bidi/zero-width characters, trailing dots or spaces',
  },
  {
    name: 'attachment.type_mismatch',
    stage: 'data',
    type: 'boolean',
    description: 'A declared Content-Type contradicts the detected type (a "PDF" that is a PE)',
  },
  { name: 'attachment.macro', stage: 'data', type: 'boolean', description: 'An Office document with VBA macros (OLE2 VBA storage, or OOXML vbaProject.bin)' },
  { name: 'attachment.pdf_javascript', stage: 'data', type: 'boolean', description: 'A PDF contains JavaScript (/JavaScript, /JS)' },
  {
    name: 'attachment.pdf_open_action',
    stage: 'data',
    type: 'boolean',
    description: 'A PDF runs an action when opened (/OpenAction, /AA) or launches a program (/Launch)',
  },
  { name: 'attachment.files', stage: 'data', type: 'records', description: 'Every file inspected, archive members included', fields: FILE_FIELDS },
  { name: 'archive.count', stage: 'data', type: 'number', description: 'Archives opened (zip, gzip, tar), nested ones included' },
  {
    name: 'archive.encrypted',
    stage: 'data',
    type: 'boolean',
    description: 'An archive (or Office document) is password-protected: its contents cannot be inspected',
  },
  {
    name: 'archive.bomb',
    stage: 'data',
    type: 'boolean',
    description: 'An archive exceeds the compression-ratio, size or entry-count limits (content.archives)',
  },
  {
    name: 'archive.incomplete',
    stage: 'data',
    type: 'boolean',
    description: 'An archive could not be listed completely (corrupt, too big to open, limits, or nested deeper than max_depth)',
  },
  { name: 'archive.executable', stage: 'data', type: 'boolean', description: 'An executable or script is inside an archive' },
  { name: 'archive.unsupported', stage: 'data', type: 'string[]', description: 'Archive formats found but not opened (rar, 7z, cab, ...)' },
];

export interface FileInfo {
  name: string;
  extension: string;
  extensions: string[];
  declaredType: string;
  detectedType: string;
  size: number;
  executable: boolean;
  executableType: string;
  doubleExtension: boolean;
  hiddenName: boolean;
  typeMismatch: boolean;
  macro: boolean;
  pdfJavascript: boolean;
  pdfOpenAction: boolean;
  encrypted: boolean;
  /** Path of the archive(s) it is in ("a.zip/b.zip"), "" for a MIME attachment. */
  container: string;
  inMessage: boolean;
  source: 'mime' | 'uuencode' | 'archive';
}

export interface AttachmentReport {
  count: number;
  files: FileInfo[];
  archives: number;
  encrypted: boolean;
  bomb: boolean;
  incomplete: boolean;
  unsupported: string[];
}

const UNSUPPORTED_ARCHIVES = new Set(['rar', '7z', 'cab', 'arj', 'lzh', 'ace', 'xz', 'bz2', 'zst', 'lz', 'cpio', 'ar', 'rpm', 'dmg']);

interface Item {
  name: string;
  declaredType: string;
  size: number;
  head: Buffer;
  data: Buffer | undefined;
  container: string;
  inMessage: boolean;
  source: FileInfo['source'];
  level: number;
}

async function inspect(item: Item, report: AttachmentReport, limits: ArchiveLimits, budget: ArchiveBudget): Promise<void> {
  const n = normalizeFileName(item.name);
  const s = await sniff(item.head);
  const info: FileInfo = {
    name: n.name,
    extension: n.extension,
    extensions: n.extensions,
    declaredType: item.declaredType,
    detectedType: s.mime,
    size: item.size,
    executable: s.executable !== '' || n.risky,
    executableType: s.executable || (n.risky ? n.extension : ''),
    doubleExtension: n.doubleExtension,
    hiddenName: n.hidden,
    typeMismatch: item.source === 'mime' && typeMismatch(item.declaredType, s.mime),
    macro: false,
    pdfJavascript: false,
    pdfOpenAction: false,
    encrypted: false,
    container: item.container,
    inMessage: item.inMessage,
    source: item.source,
  };
  report.files.push(info);
  const data = item.data;
  // Macro-enabled extensions count even when the bytes could not be read (too big, encrypted).
  if (['docm', 'dotm', 'xlsm', 'xltm', 'xlam', 'pptm', 'potm', 'ppam', 'ppsm', 'sldm'].includes(n.extension)) info.macro = true;
  if (isOle(item.head) && data) {
    const ole = inspectOle(data);
    if (ole.macro) info.macro = true;
    if (ole.encrypted) {
      info.encrypted = true;
      report.encrypted = true;
    }
  }
  if (isPdf(item.head)) {
    const pdf = inspectPdf(data ?? item.head);
    info.pdfJavascript = pdf.javascript;
    info.pdfOpenAction = pdf.openAction || pdf.launch;
  }
  if (UNSUPPORTED_ARCHIVES.has(s.ext) && !report.unsupported.includes(s.ext)) report.unsupported.push(s.ext);
  // By magic number, not by file-type's name for it (OOXML, JAR and .tar.gz are archives too).
  if (archiveFormat(item.head) === '') return;
  if (!data) {
    report.incomplete = true;
    return;
  }
  if (item.level >= limits.maxDepth) {
    report.incomplete = true;
    return;
  }
  const listing = await listArchive(data, n.name, limits, budget);
  if (!listing) return;
  report.archives++;
  if (listing.encrypted) {
    report.encrypted = true;
    info.encrypted = true;
  }
  if (listing.bomb) report.bomb = true;
  if (listing.incomplete) report.incomplete = true;
  const path = item.container ? `${item.container}/${n.name}` : n.name;
  for (const m of listing.members) {
    if (isVbaMember(m.name)) info.macro = true;
    await inspect(
      {
        name: m.name,
        declaredType: '',
        size: m.size,
        head: (m.data ?? Buffer.alloc(0)).subarray(0, 4100),
        data: m.data,
        container: path,
        inMessage: item.inMessage,
        source: 'archive',
        level: item.level + 1,
      },
      report,
      limits,
      budget,
    );
    const last = report.files[report.files.length - 1];
    if (last && m.encrypted) last.encrypted = true;
  }
}

/** Inspects the attachments of a walk (and what is inside their archives). */
export async function analyseAttachments(walk: MimeWalk, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Promise<AttachmentReport> {
  const report: AttachmentReport = { count: 0, files: [], archives: 0, encrypted: false, bomb: false, incomplete: false, unsupported: [] };
  const budget: ArchiveBudget = { entries: 0, bytes: 0 };
  for (const p of walk.parts) {
    if (!p.attachment) continue;
    report.count++;
    await inspect(
      {
        name: p.filename,
        declaredType: p.contentType,
        size: p.size,
        head: p.head,
        data: p.data,
        container: '',
        inMessage: p.inMessage,
        source: p.source,
        level: 0,
      },
      report,
      limits,
      budget,
    );
  }
  return report;
}

/** The memoised attachment report of a message (the AV check scans the same files). */
export function attachmentsOf(message: MessageView, walkLimits?: WalkLimits, limits?: ArchiveLimits): Promise<AttachmentReport> {
  return derivedOf(message, 'attachments', async () => analyseAttachments(await walkOf(message, walkLimits), limits));
}

function record(f: FileInfo): FactRecord {
  return {
    name: f.name,
    extension: f.extension,
    extensions: f.extensions.join('.'),
    declared_type: f.declaredType,
    detected_type: f.detectedType,
    size: f.size,
    executable: f.executable,
    executable_type: f.executableType,
    double_extension: f.doubleExtension,
    hidden_name: f.hiddenName,
    type_mismatch: f.typeMismatch,
    macro: f.macro,
    pdf_javascript: f.pdfJavascript,
    pdf_open_action: f.pdfOpenAction,
    encrypted: f.encrypted,
    container: f.container,
    in_message: f.inMessage,
    source: f.source,
  };
}

const uniq = (xs: string[]) => [...new Set(xs.filter((x) => x !== ''))].slice(0, 100);

export function createAttachmentsCheck(walkLimits?: WalkLimits, limits?: ArchiveLimits): Check {
  return {
    name: 'attachments',
    effects: 'none',
    stages: ['data'],
    facts: attachmentFacts,
    needs: ['mime.*'],
    timeoutMs: 20_000,
    // Blocking executables is a safety property: an inspection that fails defers the message.
    onFailure: 'tempfail',
    async run(input, out) {
      if (!input.message) return;
      const r = await attachmentsOf(input.message, walkLimits, limits);
      const files = r.files.slice(0, 500);
      const f = out.facts;
      f.set('attachment.count', r.count);
      f.set('attachment.names', uniq(files.map((x) => x.name)));
      f.set('attachment.extensions', uniq(files.map((x) => x.extension)));
      f.set('attachment.detected_types', uniq(files.map((x) => x.detectedType)));
      f.set(
        'attachment.executable',
        files.some((x) => x.executable),
      );
      f.set('attachment.executable_types', uniq(files.map((x) => x.executableType)));
      f.set(
        'attachment.double_extension',
        files.some((x) => x.doubleExtension),
      );
      f.set(
        'attachment.hidden_name',
        files.some((x) => x.hiddenName),
      );
      f.set(
        'attachment.type_mismatch',
        files.some((x) => x.typeMismatch),
      );
      f.set(
        'attachment.macro',
        files.some((x) => x.macro),
      );
      f.set(
        'attachment.pdf_javascript',
        files.some((x) => x.pdfJavascript),
      );
      f.set(
        'attachment.pdf_open_action',
        files.some((x) => x.pdfOpenAction),
      );
      f.set('attachment.files', files.map(record));
      f.set('archive.count', r.archives);
      f.set('archive.encrypted', r.encrypted);
      f.set('archive.bomb', r.bomb);
      f.set('archive.incomplete', r.incomplete);
      f.set(
        'archive.executable',
        files.some((x) => x.executable && x.container !== ''),
      );
      f.set('archive.unsupported', [...r.unsupported]);
    },
  };
}
