import { colourStatus } from './status-colour.js';

/**
 * A table as the CLI prints it: a header row, columns padded to their widest cell, two spaces
 * between, trailing blanks trimmed; the cells of `statusColumn` coloured by `colourStatus`
 * (plain when piped or with NO_COLOR).
 *
 * @example
 * for (const line of tableLines(['ID', 'STATUS'], [['run_1', 'completed']], { statusColumn: 1 })) console.log(line);
 */
export function tableLines(head: string[], rows: string[][], opts: { statusColumn?: number } = {}): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[], colour: boolean) =>
    cells
      .map((c, i) => {
        const padded = c.padEnd(widths[i]!);
        return colour && i === opts.statusColumn ? colourStatus(padded) : padded;
      })
      .join('  ')
      .trimEnd();
  return [line(head, false), ...rows.map((r) => line(r, true))];
}
