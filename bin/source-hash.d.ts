// Types of bin/source-hash.js (plain JavaScript: the launcher must run without type stripping).
export function sourceHash(root: string): string;
export function chooseEntry(root: string): { entry: string; dist: boolean; stale: boolean };
