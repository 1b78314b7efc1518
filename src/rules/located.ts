// Zod validation of a value that came from one or more YAML files, turning each issue into a
// SourceError at the right file and line with wording a postmaster understands.
import type { z } from 'zod';
import { formatPath, SourceError } from '../config/yaml-source.ts';

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
