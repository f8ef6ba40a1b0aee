/**
 * The guest applier's take-backs (the routes, a link's addresses, the neighbours put back from a
 * snapshot) refused by the kernel: the refusal is a registered error (GuestRestoreError) whose cause
 * is the kernel's error, so its errno is not lost and the one classifier reads it (an EPERM is "not
 * permitted"), and the NetworkApplyError of the call keeps it beside the message. A fake handle plays
 * the kernel: the tests need a refusal root in a namespace never gets.
 */
import { describe, expect, it } from 'vitest';
import { GuestRestoreError, NetworkApplyError } from '../../../src/agent/errors.js';
import { NetlinkApplier } from '../../../src/agent/guest/netlink-applier.js';
import { classifyError, errnoOf } from '../../../src/errors.js';
import { AddressFamily } from '../../../src/netlink/codec/constants.js';
import { InterfaceFlag } from '../../../src/netlink/codec/link/message.js';
import type { Route } from '../../../src/netlink/codec/route.js';
import { RouteProtocol, RouteTable, RouteType } from '../../../src/netlink/codec/route.js';
import { NetlinkError } from '../../../src/netlink/errors.js';
import type { NetlinkHandle } from '../../../src/netlink/handle.js';

const EPERM = 1;
const ENETUNREACH = 101;

function refusal(errno: number, description: string): NetlinkError {
  return new NetlinkError({ type: 24, description }, { errno, requestType: 24, requestSequence: 1 }, undefined);
}

const oldRoute: Route = {
  family: AddressFamily.INET,
  destination: '10.9.0.0',
  destinationLength: 16,
  sourceLength: 0,
  tos: 0,
  outputIndex: 2,
  table: RouteTable.MAIN,
  protocol: RouteProtocol.BOOT,
  scope: 0,
  type: RouteType.UNICAST,
  flags: 0,
};

/**
 * A guest whose eth0 has one route from before: deleting it works, the new route is refused
 * (ENETUNREACH), and putting the old one back is refused with `undoErrno`.
 */
function refusingGuest(undoErrno: number): NetlinkHandle {
  let routes = [oldRoute];
  const handle = {
    links: async () => [
      { index: 1, name: 'lo', flags: InterfaceFlag.LOOPBACK },
      { index: 2, name: 'eth0', flags: InterfaceFlag.UP },
    ],
    routes: async () => [...routes],
    deleteRoute: async () => {
      routes = [];
    },
    replaceRoute: async () => {
      throw refusal(ENETUNREACH, 'add route 10.1.0.0/16 dev eth0');
    },
    addRoute: async () => {
      throw refusal(undoErrno, 'add route 10.9.0.0/16 dev eth0');
    },
  };
  return handle as unknown as NetlinkHandle;
}

async function failedUpdate(undoErrno: number): Promise<NetworkApplyError> {
  const applier = new NetlinkApplier(refusingGuest(undoErrno));
  const error = await applier
    .updateRoutes([
      {
        version: 4,
        destination: '10.1.0.0',
        destinationLength: 16,
        gateway: undefined,
        device: 'eth0',
        source: undefined,
        scope: 0,
        flags: 0,
        mtu: undefined,
      },
    ])
    .catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(NetworkApplyError);
  return error as NetworkApplyError;
}

describe('a take-back the guest kernel refuses', () => {
  it('is a GuestRestoreError caused by the refusal: its errno decides (EPERM: not permitted)', async () => {
    const error = await failedUpdate(EPERM);
    // The message as before: the failed step, then each undo that failed with the kernel's words.
    expect(error.message).toMatch(/^UpdateRoutes failed at "add route 10\.1\.0\.0\/16 dev eth0": .*ENETUNREACH/);
    expect(error.undoFailures).toEqual(['undo "restore the routes": add route 10.9.0.0/16 dev eth0 failed: EPERM']);
    expect(error.undoErrors).toHaveLength(1);
    const restore = error.undoErrors[0];
    expect(restore).toBeInstanceOf(GuestRestoreError);
    expect(restore).toMatchObject({ code: 'VCNET_AGENT_APPLY_FAILED', value: 'the routes' });
    expect((restore as GuestRestoreError).cause).toBeInstanceOf(NetlinkError);
    expect(errnoOf((restore as GuestRestoreError).cause)).toBe('EPERM');
    expect(classifyError(restore)).toMatchObject({ errno: 'EPERM', agent: 'PERMISSION_DENIED', exit: 'NOT_PERMITTED' });
    // The call's own outcome is its failed step's (ENETUNREACH: INTERNAL); the undo is told beside it.
    expect(classifyError(error)).toMatchObject({ code: 'VCNET_AGENT_APPLY_FAILED', agent: 'INTERNAL' });
  });

  it('keeps every refusal in the message, the first as the cause', () => {
    const first = refusal(EPERM, 'delete address 10.0.0.9/24');
    const second = refusal(17, 'add address 10.0.0.2/24');
    const error = new GuestRestoreError('the addresses of link 2', [first, second]);
    expect(error.message).toBe(`${first.message}; ${second.message}`);
    expect(error.cause).toBe(first);
    expect(error.refusals).toEqual([first, second]);
    expect(error.hint).toBe(first.hint);
    expect(classifyError(error).agent).toBe('PERMISSION_DENIED');
  });
});
