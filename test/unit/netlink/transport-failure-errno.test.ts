/**
 * A request that got no answer because the send or the receive failed carries that call's errno, as
 * the socket layer hands it over: a SystemCallError (whose `errno` is the name, 'ENOBUFS') around the
 * native shim's error (whose `errno` is the number). Each used to become EIO ("list links failed:
 * EIO"), the number being looked for on the SystemCallError.
 */
import { closeSync, openSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { classifyError, SystemCallError } from '../../../src/errors.js';
import { nativeNetlink } from '../../../src/native/netlink-socket.js';
import { NetlinkClosedError, NetlinkError } from '../../../src/netlink/errors.js';

const listLinks = { type: 18, description: 'list links' };

/** What the native shim throws for `errno` (code: its name, errno: the number, syscall, detail). */
function shimError(code: string, syscall: string): NodeJS.ErrnoException & { detail: string } {
  const number = osConstants.errno[code as keyof typeof osConstants.errno];
  return Object.assign(new Error(`${syscall} netlink: failed`), { code, errno: number, syscall, detail: 'netlink' });
}

/** The error the shim really throws when `run` fails. */
function thrownBy(run: () => unknown): NodeJS.ErrnoException {
  try {
    run();
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
  throw new Error('expected the call to fail');
}

describe('the errno of a request whose send or receive failed', () => {
  for (const errno of ['ENOBUFS', 'ENOMEM', 'EAGAIN', 'ECONNREFUSED']) {
    it(`is the call's (${errno}), from the SystemCallError the socket throws`, () => {
      const cause = new SystemCallError('receive netlink replies', shimError(errno, 'recv'));
      expect(cause.errno).toBe(errno);
      const error = NetlinkError.fromFailure(listLinks, cause, '/run/netns/pod');
      expect(error.errno).toBe(errno);
      expect(error.errnoNumber).toBe(osConstants.errno[errno as keyof typeof osConstants.errno]);
      expect(error.message).toBe(
        `list links failed: ${errno} (no answer from the kernel: receive netlink replies failed: recv netlink: failed)`,
      );
      expect(error.answerLost).toBe(true);
      expect(error.cause).toBe(cause);
      expect(classifyError(error).errno).toBe(errno);
    });
  }

  it("is the real shim error's, for an errno the shim has no name for (ENOTSOCK: it says EUNKNOWN)", () => {
    const file = openSync('/dev/null', 'r');
    let raw: NodeJS.ErrnoException;
    try {
      raw = thrownBy(() => nativeNetlink.netlinkRecv(file, Buffer.alloc(64)));
    } finally {
      closeSync(file);
    }
    expect(raw.errno).toBe(osConstants.errno.ENOTSOCK);
    const cause = new SystemCallError('receive netlink replies', raw);
    expect(cause.errno).toBe('ENOTSOCK');
    const error = NetlinkError.fromFailure(listLinks, cause, undefined);
    expect(error.errno).toBe('ENOTSOCK');
    expect(error.message).toContain(
      'list links failed: ENOTSOCK (no answer from the kernel: receive netlink replies failed:',
    );
  });

  it("is the real shim error's when the send fails (EBADF on a closed fd)", () => {
    const raw = thrownBy(() => nativeNetlink.netlinkSend(-1, Buffer.alloc(16)));
    const error = NetlinkError.fromFailure(listLinks, new SystemCallError('send a netlink request', raw), undefined);
    expect(error.errno).toBe('EBADF');
  });

  it('is the number of a raw error too, and EIO only when the cause has no errno (the socket was closed)', () => {
    expect(NetlinkError.fromFailure(listLinks, shimError('ENOBUFS', 'recv'), undefined).errno).toBe('ENOBUFS');
    const closed = NetlinkError.fromFailure(listLinks, new NetlinkClosedError('/run/netns/pod'), '/run/netns/pod');
    expect(closed.errno).toBe('EIO');
    expect(closed.message).toBe(
      'list links failed: EIO (no answer from the kernel: the netlink socket of /run/netns/pod is closed)',
    );
  });
});
