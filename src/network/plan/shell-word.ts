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
