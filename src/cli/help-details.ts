/**
 * Long command help, kept readable: `vcnet --help` lists each command by its one-line summary, and
 * `vcnet <command> --help` shows a short description, the usage and options first, then the details
 * as wrapped paragraphs. docs/cli.md gets the same paragraphs (scripts/generate-cli-docs.ts).
 */
import type { Command } from 'commander';

const DETAILS = new WeakMap<Command, readonly string[]>();

/** Widest line the details are wrapped to, whatever the terminal: long lines read badly. */
const MAX_WIDTH = 100;

/** Breaks `text` into lines of at most `width` characters at spaces (a longer word stays whole). */
export function wrapParagraph(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((part) => part !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The width the help is written for: the terminal's, at most MAX_WIDTH; 80 when not a terminal. */
function helpWidth(): number {
  const columns = process.stdout.isTTY ? process.stdout.columns : undefined;
  return Math.max(40, Math.min(MAX_WIDTH, columns ?? 80));
}

/**
 * Gives `command` its one-line summary (the parent's command list), its short description and the
 * paragraphs printed after its options.
 */
export function describeCommand(
  command: Command,
  text: { summary: string; description: string; details?: readonly string[] },
): Command {
  command.summary(text.summary).description(text.description);
  const details = text.details ?? [];
  if (details.length === 0) return command;
  DETAILS.set(command, details);
  return command.addHelpText('after', () => {
    const width = helpWidth();
    return `\nDetails:\n${details
      .map((paragraph) =>
        wrapParagraph(paragraph, width - 2)
          .map((line) => `  ${line}`)
          .join('\n'),
      )
      .join('\n\n')}\n`;
  });
}

/** The paragraphs describeCommand gave `command` ([] when none). */
export function commandDetails(command: Command): readonly string[] {
  return DETAILS.get(command) ?? [];
}
