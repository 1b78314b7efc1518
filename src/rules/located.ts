// Zod validation of a value that came from one or more YAML files, turning each issue into a
// SourceError at the right file and line with wording a postmaster understands.
import type { z } from 'zod';
import { LineCounter, parseDocument } from 'yaml';
import { formatPath, parseYaml, SourceError, SourceErrors, type YamlSource } from '../config/yaml-source.ts';

/**
 * parseYaml with the line of each syntax error. (parseYaml reads `linePos`, which the yaml
 * package fills only with prettyErrors, so it reports line 1; the positions are recomputed here.)
 */
export function parseYamlLocated(file: string, text: string): YamlSource {
  try {
    return parseYaml(file, text);
  } catch (err) {
    if (!(err instanceof SourceErrors)) throw err;
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length === 0) throw err;
    // An error found at end of input (an unclosed quote) is reported on the last line.
    const last = text.replace(/\n+$/, '').split('\n').length;
    throw new SourceErrors(
      doc.errors.map((e) => new SourceError(file, Math.min(lines.linePos(e.pos[0]).line, last), '', `YAML syntax error: ${e.message.split('\n')[0]}`)),
    );
  }
}

/** Maps a path inside the validated value to the file, line and display key of its origin. */
export type Locator = (path: readonly PropertyKey[]) => { file: string; line: number; key: string };

function reword(issue: z.core.$ZodIssue): string {
  const m = /^Invalid input: expected (\w+), received undefined$/.exec(issue.message);
  if (m) return `required (expected ${m[1]})`;
  const opt = /^Invalid option: expected one of (.*)$/.exec(issue.message);
  if (opt) return `expected one of ${(opt[1] ?? '').replaceAll('"', '').split('|').join(', ')}`;
  return issue.message.replace(/^Invalid input: /, '');
}

/**
 * Validates `value`; on failure appends one SourceError per issue to `problems` and returns
 * undefined. `keysHint` lists the keys allowed at the top of the value, for unknown-key messages.
 */
export function validateLocated<T extends z.ZodType>(
  value: unknown,
  schema: T,
  locate: Locator,
  problems: SourceError[],
  keysHint?: readonly string[],
): z.output<T> | undefined {
  const res = schema.safeParse(value);
  if (res.success) return res.data;
  for (const issue of res.error.issues) {
    let path: PropertyKey[] = [...issue.path];
    let message = reword(issue);
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0] ?? '';
      path = [...path, key];
      message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      if (keysHint && issue.path.length === 0) message += ` (expected one of: ${keysHint.join(', ')})`;
    }
    const at = locate(path);
    problems.push(new SourceError(at.file, at.line, at.key, message));
  }
  return undefined;
}

export function keyOf(base: readonly PropertyKey[], path: readonly PropertyKey[]): string {
  return formatPath([...base, ...path]);
}
