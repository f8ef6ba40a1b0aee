/**
 * The pieces of the search for a socket or tap that keeps a namespace alive from outside it that need
 * no kernel: which /proc/PID/fd links may hold a namespace, and what is said when the kernel lacks
 * the calls to ask (the search itself runs on the real kernel in
 * test/integration/state/namespace-held-by-socket.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { heldDeviceAt, heldDeviceOf } from '../../src/netns/held-device-fds.js';
import { describeUnseen, hintForUnseen, UNSEEN_HINT } from '../../src/netns/namespace-holders.js';

describe('heldDeviceOf', () => {
  it('takes a socket (with its inode) and the tun device, nothing else', () => {
    expect(heldDeviceOf('socket:[9050397]')).toEqual({ kind: 'socket', socket: '9050397' });
    expect(heldDeviceOf('/dev/net/tun')).toEqual({ kind: 'tap' });
    for (const other of [
      'net:[4026531833]',
      'pipe:[12]',
      'anon_inode:[pidfd]',
      '/dev/net/tun (deleted)',
      '/',
      'socket:[]',
    ])
      expect(heldDeviceOf(other)).toBeUndefined();
  });
});

describe('heldDeviceAt', () => {
  it('is only for /proc/PID/fd/N paths', () => {
    // A path of another form is never read as a holder, whatever it links to.
    expect(heldDeviceAt('/proc/self/fd/0')).toBeUndefined();
    expect(heldDeviceAt('/var/run/netns/x')).toBeUndefined();
    expect(heldDeviceAt(`/proc/${process.pid}/ns/net`)).toBeUndefined();
  });
});

describe('an unseen search because the kernel lacks the calls', () => {
  const kernelOnly = { processes: [], kernelLacks: ['pidfd_getfd (Linux 5.6)'] };

  it('says what the kernel lacks and what could not be looked at', () => {
    expect(describeUnseen(kernelOnly)).toBe(
      'this kernel lacks pidfd_getfd (Linux 5.6), so the sockets and taps processes hold (each keeps the namespace it was made in alive) could not be asked which namespace they belong to',
    );
  });

  it('does not send the user after a capability that cannot help', () => {
    expect(hintForUnseen(kernelOnly)).not.toContain('CAP_SYS_PTRACE');
    expect(hintForUnseen(kernelOnly)).toContain('no capability gives this kernel what it lacks');
    expect(hintForUnseen({ processes: [42] })).toBe(UNSEEN_HINT);
    // Both: the capability for the processes, and the kernel said too.
    const both = hintForUnseen({ processes: [42], kernelLacks: ['TUNGETDEVNETNS (Linux 5.2)'] });
    expect(both.startsWith(UNSEEN_HINT)).toBe(true);
    expect(both).toContain('no capability gives this kernel what it lacks');
  });
});
