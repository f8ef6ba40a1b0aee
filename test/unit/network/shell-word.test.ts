/**
 * Dry-run words and comments as a real POSIX shell reads them: every word comes back as it was,
 * whatever it holds, and a comment stays one comment.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { commandOf } from '../../../src/network/plan/commands.js';
import { shellWord } from '../../../src/network/plan/shell-word.js';
import { escapedControlCharacters } from '../../../src/terminal-text.js';

/** What `sh` passes to a command for `text` (one argument per line, NUL-free). */
function shellArguments(text: string): string[] {
  const output = execFileSync('sh', ['-c', `printf '%s\\0' ${text}`], { encoding: 'utf8' });
  return output.split('\0').slice(0, -1);
}

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
