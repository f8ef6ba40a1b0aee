/**
 * Text from outside (a pod link's name, a kernel or QEMU message) made safe for a terminal or a
 * shell comment line: control characters are written as escapes (`\n`, `\x1b`) and a backslash as
 * `\\`. A name may hold a terminal's escape codes (ESC, or the C1 CSI \x9b), which would otherwise
 * reach the operator's terminal, and a newline in a `# ...` comment of a dry run would end the comment
 * and make the rest a command. The backslash is escaped so that an escape reads as one: for a bare
 * value (a table's cells, the dry-run comments); a message goes through escapedControlCharactersInMessage
 * (the CLI's human output and stderr, the pretty log lines, vcnet-cni's stderr lines).
 */
export function escapedControlCharacters(text: string): string {
  return escaped(text, /[\\\x00-\x1f\x7f-\x9f\u2028\u2029]/g);
}

/**
 * A message made safe the same way, its backslashes left as they are: a message quotes its values
 * as JSON (`invalid interface: "{name\n"`), whose backslashes are escapes already, and escaped
 * again they read double (`"{name\\n"`). Its control characters (a raw one in a kernel's or
 * QEMU's text, or the C1 and line separators JSON leaves raw) are still escaped.
 */
export function escapedControlCharactersInMessage(text: string): string {
  return escaped(text, /[\x00-\x1f\x7f-\x9f\u2028\u2029]/g);
}

/**
 * Text read from bytes that are not all UTF-8 (record-envelope's damagedRecordText keeps each bad
 * byte as a lone surrogate, U+DC80 to U+DCFF, as Python's surrogateescape does) written as `ls -b`
 * writes a file name: each bad byte `\xNN`, a backslash `\\`, a control character escaped as in
 * escapedControlCharacters. What a damaged record still tells of a path, one text for every output.
 */
export function escapedBytes(text: string): string {
  return escaped(text, /[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u{dc80}-\u{dcff}]/gu);
}

/** Whether `text` holds a byte that was no part of a UTF-8 character (see escapedBytes). */
export function holdsBadBytes(text: string): boolean {
  return /[\u{dc80}-\u{dcff}]/u.test(text);
}

function escaped(text: string, characters: RegExp): string {
  return text.replace(characters, (character) => {
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
        if (code >= 0xdc80 && code <= 0xdcff) return `\\x${(code - 0xdc00).toString(16)}`;
        return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
      }
    }
  });
}

/** Each line of a message with its control characters escaped (not its backslashes); its own newlines stay. */
export function terminalLines(text: string): string {
  return text.split('\n').map(escapedControlCharactersInMessage).join('\n');
}
