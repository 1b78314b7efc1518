// Parses YAML keeping positions, so that config and rules errors can name file, line and key.
// Shared by the config loader and the rules loader.
import { LineCounter, parseDocument, isNode, isPair, visit, type Document } from 'yaml';
import type { z } from 'zod';

export interface YamlSource {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

/** A validation or syntax problem located in a file. */
export class SourceError extends Error {
  readonly file: string;
  readonly line: number;
  readonly key: string;
  constructor(file: string, line: number, key: string, message: string) {
    super(`${file}:${line}: ${key ? `${key}: ` : ''}${message}`);
    this.file = file;
    this.line = line;
    this.key = key;
  }
}

/** Thrown when a file has one or more problems; `problems` lists each with its line. */
export class SourceErrors extends Error {
  readonly problems: SourceError[];
  constructor(problems: SourceError[]) {
    super(problems.map((p) => p.message).join('\n'));
    this.problems = problems;
  }
}

export function parseYaml(file: string, text: string): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new SourceErrors(
      doc.errors.map((e) => {
        // linePos is only filled with prettyErrors; the offset always is.
        const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
        return new SourceError(file, line, '', `YAML syntax error: ${e.message.split('\n')[0]}`);
      }),
    );
  }
  // Aliases are only resolved by toJS(): an alias to an anchor defined later (or nowhere), or an
  // alias bomb past the yaml package's maxAliasCount, would throw a bare ReferenceError at every
  // later toJS() (found by fuzzing, issue 14). Resolve once here and report it located.
  try {
    doc.toJS();
  } catch (err) {
    let line = 1;
    visit(doc, {
      Alias(_key, node) {
        if (node.range) line = lines.linePos(node.range[0]).line;
        return visit.BREAK;
      },
    });
    throw new SourceErrors([new SourceError(file, line, '', `YAML error: ${(err as Error).message.split('\n')[0]}`)]);
  }
  return { file, doc, lines };
}

/** 1-based line of the node at `path`, or of its nearest existing ancestor. */
export function lineOf(src: YamlSource, path: ReadonlyArray<PropertyKey>): number {
  for (let n = path.length; n >= 0; n--) {
    const sub = path.slice(0, n).map((p) => (typeof p === 'symbol' ? String(p) : p));
    // For the key itself (unknown key errors) prefer the key's own position.
    const node = sub.length === 0 ? src.doc.contents : src.doc.getIn(sub, true);
    if (isNode(node) && node.range) return src.lines.linePos(node.range[0]).line;
    if (isPair(node)) {
      const k = node.key;
      if (isNode(k) && k.range) return src.lines.linePos(k.range[0]).line;
    }
    if (sub.length > 0) {
      const parent = sub.length === 1 ? src.doc.contents : src.doc.getIn(sub.slice(0, -1), true);
      const last = sub[sub.length - 1];
      if (parent && typeof parent === 'object' && 'items' in parent && Array.isArray(parent.items)) {
        for (const item of parent.items as unknown[]) {
          if (isPair(item) && isNode(item.key) && (item.key as { value?: unknown }).value === last && item.key.range) {
            return src.lines.linePos(item.key.range[0]).line;
          }
        }
      }
    }
  }
  return 1;
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += (out ? '.' : '') + String(p);
  }
  return out;
}

/** Validates the document against a zod schema, turning each issue into a located error. */
export function validate<T extends z.ZodType>(src: YamlSource, schema: T, basePath: PropertyKey[] = []): z.output<T> {
  const node = basePath.length === 0 ? src.doc.contents : src.doc.getIn(basePath as unknown[], true);
  const value: unknown = isNode(node) ? node.toJS(src.doc) : node;
  const res = schema.safeParse(value ?? {});
  if (res.success) return res.data;
  const problems = res.error.issues.map((issue) => {
    let path: PropertyKey[] = [...basePath, ...issue.path];
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      // Point at the unknown key itself, and say which keys are allowed there.
      const key = issue.keys[0] ?? '';
      path = [...path, key];
      message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    }
    return new SourceError(src.file, lineOf(src, path), formatPath(path), message);
  });
  throw new SourceErrors(problems);
}
