// Temporary rules directories for tests: files given as { 'path/in/dir': 'content' }.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export function makeRulesDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-rules-'));
  writeRules(dir, files);
  return dir;
}

export function writeRules(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
}
