/**
 * The guest kernel's command line: what every boot of vcnet's guest (the demo, the end-to-end tests)
 * depends on, checked without booting.
 */
import { describe, expect, it } from 'vitest';
import { guestKernelCommandLine } from '../../../src/hypervisor/guest-image.js';

describe('guestKernelCommandLine', () => {
  it('skips the IO-APIC timer check, as Kata does for its guests (it panicked boots under TCG on a busy host)', () => {
    const words = guestKernelCommandLine().split(' ');
    expect(words).toContain('no_timer_check');
    // A panic still ends the boot at once (QEMU's -no-reboot turns the reboot into an exit).
    expect(words).toContain('panic=-1');
  });

  it('keeps the caller’s words and refuses one with a space, naming it', () => {
    expect(guestKernelCommandLine({ extra: ['loglevel=7'] }).split(' ')).toContain('loglevel=7');
    expect(() => guestKernelCommandLine({ extra: ['a b'] })).toThrow(/kernel parameter/);
  });
});
