/** What a failed demo tells: the guest console's tail, with a kernel panic's line kept in it. */
import { describe, expect, it } from 'vitest';
import { DemoError, lastConsoleLines } from '../../../src/demo/scenario.js';

describe('DemoError hint', () => {
  it('puts the Kernel panic line first when the stack dump after it is longer than the tail', () => {
    const console = [
      '[    0.100000] booting',
      "[    0.200000] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug",
      ...Array.from({ length: 30 }, (_, index) => `[    0.3000${index}] Call Trace line ${index}`),
    ].join('\n');
    const error = new DemoError('booting the guest', new Error('QEMU exited with status 0'), console);
    const hintLines = (error.hint ?? '').split('\n');
    expect(hintLines[1]).toMatch(/Kernel panic - not syncing: IO-APIC/);
    expect(hintLines.at(-1)).toMatch(/Call Trace line 29/);
    expect(hintLines).toHaveLength(1 + 1 + 1 + 15);
  });

  it('quotes the last 15 lines unchanged when there is no panic or the tail already has it', () => {
    const lines = Array.from({ length: 20 }, (_, index) => `line ${index}`);
    expect(lastConsoleLines(lines.join('\n'))).toBe(lines.slice(-15).join('\n'));
    const panicAtTheEnd = [...lines, 'Kernel panic - not syncing: Attempted to kill init!'];
    expect(lastConsoleLines(panicAtTheEnd.join('\n'))).toBe(panicAtTheEnd.slice(-15).join('\n'));
  });
});
