/** Human output (aligned tables) and machine output (JSON on stdout, nothing else there). */
import { escapedControlCharacters, terminalLines } from '../terminal-text.js';

/**
 * An aligned table. Cells go through escapedControlCharacters: a link name (chosen by whoever owns the
 * pod) can hold escape codes, which must not reach the operator's terminal; `--json` output keeps them
 * as they are.
 */
export function table(headers: string[], cells: Array<Array<string | { escaped: string }>>): string {
  // `{ escaped }`: a cell already written safe for a terminal (a damaged path, `ls -b`'s way), shown as it is.
  const rows = cells.map((row) =>
    row.map((cell) => (typeof cell === 'string' ? escapedControlCharacters(cell) : cell.escaped)),
  );
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

/** Failed writes to stdout and stderr, shared with vcnet-cni (exit 6 when stdout is lost). */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A line of human output on stdout that may name pod links: escape codes in a name are shown, not run. */
export function printText(text: string): void {
  print(terminalLines(text));
}

/** Human text on stderr (errors, warnings) that may name pod links, escaped as printText does. */
export function writeStderr(text: string): void {
  process.stderr.write(terminalLines(text));
}

/** A `# ...` line of output meant for a shell (dry-run plans): control characters cannot end the comment. */
export function printComment(text: string): void {
  print(`# ${escapedControlCharacters(text)}`);
}

/** A route's `dest` for a table, as `ip route` shows it: "default" for "", 0.0.0.0/0 and ::/0. */
export function routeDestination(dest: string): string {
  return dest === '' || dest === '0.0.0.0/0' || dest === '::/0' ? 'default' : dest;
}
