/**
 * Words and comments for the POSIX shell that `vcnet attach|detach --dry-run` output is piped to.
 * Link names, address labels and congestion control names come from the pod namespace, whose owner
 * picks them, and the kernel allows `;`, `|`, `$`, quotes and backquotes in them: unquoted they would
 * run as commands.
 */

/** Characters no POSIX shell gives a meaning to in a word (a word made only of these needs no quotes). */
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** `word` as the shell reads it back unchanged: as it is when plain, else single-quoted (`'` as `'\''`). */
export function shellWord(word: string): string {
  if (PLAIN_WORD.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * `text` fit for a `# ...` comment line: a newline would end the comment and make the rest a command,
 * so control characters are written as escapes (`\n`, `\x1b`) and a backslash as `\\`. The CLI's
 * human output (cli/output.ts) uses it too: a pod link's name may hold a terminal's escape codes
 * (ESC, or the C1 CSI \x9b), which would otherwise reach the operator's terminal.
 */
export function commentText(text: string): string {
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
