/** Human output (aligned tables) and machine output (JSON on stdout, nothing else there). */
import { commentText } from '../network/plan/shell-word.js';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A `# ...` line of output meant for a shell (dry-run plans): control characters cannot end the comment. */
export function printComment(text: string): void {
  print(`# ${commentText(text)}`);
}

/** A route's `dest` for a table, as `ip route` shows it: "default" for "", 0.0.0.0/0 and ::/0. */
export function routeDestination(dest: string): string {
  return dest === '' || dest === '0.0.0.0/0' || dest === '::/0' ? 'default' : dest;
}
