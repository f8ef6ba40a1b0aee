/**
 * Text from outside (a pod link's name, a kernel or QEMU message) made safe for a terminal or a
 * shell comment line: control characters are written as escapes (`\n`, `\x1b`) and a backslash as
 * `\\`. A name may hold a terminal's escape codes (ESC, or the C1 CSI \x9b), which would otherwise
 * reach the operator's terminal, and a newline in a `# ...` comment of a dry run would end the comment
 * and make the rest a command. Used by the dry-run comments, the CLI's human output and the pretty
 * log lines alike.
 */
export function escapedControlCharacters(text: string): string {
  return text.replace(/[\\\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (character) => {
    switch (character) {
      case '\\':
        return '\\\\';
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default: {
        const code = character.charCodeAt(0);
        return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
      }
    }
  });
}

/** Each line of `text` with its control characters escaped; its own newlines stay. */
export function terminalLines(text: string): string {
  return text.split('\n').map(escapedControlCharacters).join('\n');
}
