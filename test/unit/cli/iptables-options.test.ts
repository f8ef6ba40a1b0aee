/**
 * `vcnet iptables` parsing: the sandbox from --sandbox or Kata's --sandbox-id, and set's input (a file,
 * or - / nothing for a piped stdin; never a terminal nobody types rules into).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readRules, sandboxOf } from '../../../src/cli/commands/iptables.js';
import { buildProgram } from '../../../src/cli/program.js';

const directory = mkdtempSync(join(tmpdir(), 'vcnet-iptables-options-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('vcnet iptables options', () => {
  it('takes the sandbox from --sandbox or --sandbox-id, refusing none and two different ones', () => {
    expect(sandboxOf({ sandbox: 's1' })).toBe('s1');
    expect(sandboxOf({ sandboxId: 's1' })).toBe('s1');
    expect(sandboxOf({ sandbox: 's1', sandboxId: 's1' })).toBe('s1');
    expect(() => sandboxOf({})).toThrow(/invalid --sandbox: not given.*--sandbox-id ID as kata-runtime takes it/);
    expect(() => sandboxOf({ sandbox: 's1', sandboxId: 's2' })).toThrow(
      /--sandbox-id.*the same id as --sandbox \(s1\)/,
    );
  });

  it('reads set rules from a file as bytes, and refuses a missing file or a terminal stdin naming FILE', () => {
    const file = join(directory, 'rules');
    writeFileSync(file, '*filter\nCOMMIT\n');
    expect(readRules(file, true).toString()).toBe('*filter\nCOMMIT\n');
    expect(() => readRules(join(directory, 'missing'), false)).toThrow(
      /invalid FILE: .*missing.*a readable iptables-save file, or - for standard input/,
    );
    for (const source of [undefined, '-']) {
      expect(() => readRules(source, true)).toThrow(
        expect.objectContaining({
          code: 'VCNET_INVALID_INPUT',
          hint: expect.stringContaining('standard input is a terminal'),
        }),
      );
    }
  });

  it('has get and set under iptables, with --v6, --sandbox-id and set [file]', () => {
    const iptables = buildProgram().commands.find((command) => command.name() === 'iptables');
    expect(iptables?.commands.map((command) => command.name())).toEqual(['get', 'set']);
    for (const command of iptables?.commands ?? []) {
      expect(command.options.map((option) => option.long)).toEqual(
        expect.arrayContaining(['--sandbox', '--sandbox-id', '--v6', '--state-dir', '--timeout', '--json']),
      );
    }
    expect(iptables?.commands[1]?.registeredArguments.map((argument) => [argument.name(), argument.required])).toEqual([
      ['file', false],
    ]);
  });
});
