// Aligned text tables for CLI output: a header row, columns padded to their widest cell, the
// last column left ragged. Cells are made printable (a sender can put anything in an address).

function printable(s: string, max: number): string {
  let out = '';
  for (const c of s) {
    if (out.length >= max) return `${out.slice(0, max - 1)}…`;
    out += c < ' ' || c === '\x7f' ? '?' : c;
  }
  return out;
}

export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>, maxCell = 60): string {
  const cells = [header.map((h) => printable(h, maxCell)), ...rows.map((r) => r.map((c) => printable(c, maxCell)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return (
    cells
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
