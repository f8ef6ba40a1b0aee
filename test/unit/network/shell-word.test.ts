/**
 * Dry-run words and comments as a real POSIX shell reads them: every word comes back as it was,
 * whatever it holds, and a comment stays one comment.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { commandOf } from '../../../src/network/plan/commands.js';
import { shellWord } from '../../../src/shell-word.js';
import { escapedControlCharacters } from '../../../src/terminal-text.js';

/** What `shell` (dash as `sh` on Debian, or bash) passes to a command for `text` (NUL-free). */
function shellArguments(text: string, shell = 'sh'): string[] {
  const output = execFileSync(shell, ['-c', `printf '%s\\0' ${text}`], { encoding: 'utf8' });
  return output.split('\0').slice(0, -1);
}

/** What a terminal acts on: escapedControlCharacters' set, the newline aside (no link name holds one). */
const TERMINAL_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]/;

/** Link names with a terminal's escape codes in them: ESC, BEL, CR, the C1 CSI, a line separator. */
const TERMINAL_WORDS = ['r\x1b[31m\x07', '\x1b]0;x\x07', "q'\x1b[1m'", 'x\ry', '\x9b2J', 'a\u2028b', 'é\x1b', '\x1b'];

const WORDS = [
  'eth0',
  'tap0_kata',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the shell's ${IFS}, meant literally
  'e;touch${IFS}Q',
  "q'x|y`z`",
  "''",
  'a b',
  '$(id)',
  '{a,b}',
  '*',
  '~root',
  '-n',
  'a\\b',
  '!x',
  '#x',
  'é',
  '',
];

describe('shellWord', () => {
  it.each(WORDS)('%j reaches the command as it is, as one argument', (word) => {
    expect(shellArguments(shellWord(word))).toEqual([word]);
  });

  it.each(TERMINAL_WORDS)(
    '%j reaches the command as it is under dash and bash, and prints no control character',
    (word) => {
      const quoted = shellWord(word);
      expect(quoted).not.toMatch(TERMINAL_CONTROL);
      expect(shellArguments(quoted)).toEqual([word]);
      expect(shellArguments(quoted, 'bash')).toEqual([word]);
    },
  );

  it('writes a control character as a printf escape between the quoted parts', () => {
    expect(shellWord('r\x1b[31m')).toBe(`'r'"$(printf '\\033')"'[31m'`);
    expect(shellWord('\x1b')).toBe(`"$(printf '\\033')"`);
    expect(shellWord('\x9b')).toBe(`"$(printf '\\302\\233')"`);
  });

  it('leaves plain words (link names iproute2 prints, addresses, numbers) unquoted', () => {
    for (const word of ['eth0', 'tap0_kata', '10.0.0.1/24', 'fd00::1', '02:00:00:00:00:01', 'ffff:fff2', 'veth-1.2@x'])
      expect(shellWord(word)).toBe(word);
  });

  it('quotes every link name of a command, so nothing in it runs', () => {
    const link = { name: 'a;b$c|d', index: 5, role: 'pod' } as const;
    const redirectTo = { name: "t'1", index: 6, role: 'tap' } as const;
    const command = commandOf({
      op: 'add-filter',
      link,
      parent: 0xffff0000,
      protocol: 3,
      priority: 49152,
      redirectTo,
    } as Parameters<typeof commandOf>[0]);
    expect(command).toBe(
      "tc filter add dev 'a;b$c|d' parent ffff: protocol all prio 49152 u32 match u32 0 0 action mirred egress redirect dev 't'\\''1'",
    );
    expect(shellArguments(command.replace(/^tc /, ''))).toContain('a;b$c|d');
    expect(shellArguments(command.replace(/^tc /, ''))).toContain("t'1");
  });
});

describe('a comment line (escapedControlCharacters)', () => {
  it('keeps a comment on one line whatever the text holds', () => {
    const text = escapedControlCharacters('sandbox a\ntouch Q\r\x1b[31m\u2028b\\n');
    expect(text).toBe('sandbox a\\ntouch Q\\r\\x1b[31m\\u2028b\\\\n');
    expect(text).not.toMatch(/[\x00-\x1f\x7f]/);
    // As a shell reads it: nothing runs.
    expect(execFileSync('sh', ['-e', '-c', `# ${text}\necho done`], { encoding: 'utf8' })).toBe('done\n');
  });
});
