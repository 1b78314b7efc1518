// List files (Rspamd multimap's idea): one entry per line so a postmaster blocks a domain by
// appending a line. Entries are exact values (case-insensitive), globs, `/regex/flags`, or for IP
// facts addresses and CIDR blocks. `#` starts a comment at line start or after whitespace.
import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { SourceError } from '../config/yaml-source.ts';
import { IpSet } from '../net/ip.ts';
import { globToRegExp, isGlob, looksLikeRegex, parseRegex, type TextPattern } from '../message/text-patterns.ts';

export type ListKind = 'string' | 'ip';

export interface ListMatcher {
  readonly path: string;
  readonly size: number;
  match(value: string): boolean;
}

interface Entry {
  text: string;
  line: number;
}

/** Splits a list file into entries with their 1-based line numbers. */
export function parseListText(text: string): Entry[] {
  const out: Entry[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i] ?? '';
    const hash = l.search(/(^|\s)#/);
    if (hash >= 0) l = l.slice(0, hash);
    l = l.trim();
    if (l) out.push({ text: l, line: i + 1 });
  }
  return out;
}

function compileString(path: string, entries: Entry[], problems: SourceError[]): ListMatcher {
  const exact = new Set<string>();
  const patterns: TextPattern[] = [];
  for (const e of entries) {
    if (looksLikeRegex(e.text)) {
      try {
        patterns.push(parseRegex(e.text));
      } catch (err) {
        problems.push(new SourceError(path, e.line, '', (err as Error).message));
      }
    } else if (isGlob(e.text)) patterns.push(globToRegExp(e.text));
    else exact.add(e.text.toLowerCase());
  }
  return {
    path,
    size: entries.length,
    match(value) {
      if (exact.has(value.toLowerCase())) return true;
      for (const re of patterns) if (re.test(value)) return true;
      return false;
    },
  };
}

function compileIp(path: string, entries: Entry[], problems: SourceError[]): ListMatcher {
  const set = new IpSet();
  for (const e of entries) {
    if (!set.add(e.text)) {
      problems.push(new SourceError(path, e.line, '', `"${e.text}" is not an IP address or CIDR block (e.g. 192.0.2.0/24)`));
    }
  }
  return { path, size: entries.length, match: (v) => set.has(v) };
}

/**
 * The list files one load of the rules uses. Each file is read once per load; a reload builds a
 * new registry, so a broken list edit fails the reload and the previous lists stay in force.
 */
export class ListRegistry {
  readonly baseDir: string;
  /** The directory as the user wrote it, for messages. */
  readonly shownDir: string;
  readonly #entries = new Map<string, Entry[] | SourceError>();
  readonly #compiled = new Map<string, ListMatcher>();

  constructor(baseDir: string, shownDir = baseDir) {
    this.baseDir = resolve(baseDir);
    this.shownDir = shownDir;
  }

  resolve(ref: string): string {
    return isAbsolute(ref) ? ref : resolve(this.baseDir, ref);
  }

  /**
   * The matcher for `ref` (relative to the rules directory) as a list of `kind` values. Problems
   * in the file are appended to `problems`; an unreadable file yields a message for the caller
   * to attach to the rule that names it.
   */
  get(ref: string, kind: ListKind, problems: SourceError[]): ListMatcher | string {
    const path = this.resolve(ref);
    const shown = isAbsolute(ref) ? ref : join(this.shownDir, ref);
    let entries = this.#entries.get(path);
    if (entries === undefined) {
      try {
        entries = parseListText(readFileSync(path, 'utf8'));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        entries = new SourceError(shown, 0, '', e.code === 'ENOENT' ? `list file ${shown} does not exist` : `cannot read list file ${shown}: ${e.message}`);
      }
      this.#entries.set(path, entries);
    }
    if (entries instanceof SourceError) return entries.message.replace(/^[^:]*:0: /, '');
    const key = `${kind}\0${path}`;
    let m = this.#compiled.get(key);
    if (!m) {
      m = kind === 'ip' ? compileIp(shown, entries, problems) : compileString(shown, entries, problems);
      m = { path, size: m.size, match: m.match };
      this.#compiled.set(key, m);
    }
    return m;
  }

  /** Absolute paths of every list file this load read (for the watcher). */
  files(): string[] {
    return [...this.#entries.keys()];
  }
}
