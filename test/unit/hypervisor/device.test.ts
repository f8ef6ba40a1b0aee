import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { type NetworkDevice, parsePciAddress, validateNetworkDevice } from '../../../src/hypervisor/device.js';

const valid: NetworkDevice = { id: 'net0', tapName: 'tap0_kata', queues: 1, guestMac: '02:42:AC:11:00:02' };

function invalid(change: Partial<NetworkDevice>): InvalidInputError {
  try {
    validateNetworkDevice({ ...valid, ...change } as NetworkDevice);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error(`accepted ${JSON.stringify(change)}`);
}

describe('validateNetworkDevice', () => {
  it('accepts the backends the network layer hands over', () => {
    expect(() => validateNetworkDevice(valid)).not.toThrow();
    expect(() =>
      validateNetworkDevice({ ...valid, tapName: undefined, fds: [10, 11], vhostFds: [12, 13], queues: 2 }),
    ).not.toThrow();
    expect(() => validateNetworkDevice({ ...valid, fds: [10] })).not.toThrow();
    expect(() =>
      validateNetworkDevice({
        id: 'vu.1',
        vhostUserSocket: '/run/vhost/net0.sock',
        queues: 4,
        guestMac: '02:00:00:00:00:01',
      }),
    ).not.toThrow();
    expect(() =>
      validateNetworkDevice({
        ...valid,
        mtu: 1500,
        hostMac: '0a:00:00:00:00:01',
        pciAddress: '05.0',
        rateLimit: { rxBitsPerSecond: 0, txBitsPerSecond: 8 },
      }),
    ).not.toThrow();
  });

  it.each([
    [{ id: '0net' }, 'NetworkDevice.id', 'a letter'],
    [{ id: 'net 0' }, 'NetworkDevice.id', 'a letter'],
    [{ id: 'net,0' }, 'NetworkDevice.id', 'a letter'],
    [{ id: '' }, 'NetworkDevice.id', 'a letter'],
    [{ id: `n${'x'.repeat(64)}` }, 'NetworkDevice.id', '1-64'],
    [{ queues: 0 }, 'NetworkDevice.queues', '1 to 256'],
    [{ queues: 1.5 }, 'NetworkDevice.queues', '1 to 256'],
    [{ queues: 257 }, 'NetworkDevice.queues', '1 to 256'],
    [{ guestMac: '02:42:ac:11:00' }, 'NetworkDevice.guestMac', 'six hex octets'],
    [{ guestMac: '02-42-ac-11-00-02' }, 'NetworkDevice.guestMac', 'six hex octets'],
    [{ guestMac: '01:00:5e:00:00:01' }, 'NetworkDevice.guestMac', 'unicast'],
    [{ guestMac: '00:00:00:00:00:00' }, 'NetworkDevice.guestMac', 'unicast'],
    [{ hostMac: 'zz:42:ac:11:00:02' }, 'NetworkDevice.hostMac', 'six hex octets'],
    [{ tapName: 'a-name-longer-than-15' }, 'NetworkDevice.tapName', '1-15 bytes'],
    [{ tapName: 'tap,0' }, 'NetworkDevice.tapName', "','"],
    [{ tapName: 'tap/0' }, 'NetworkDevice.tapName', "'/'"],
    [{ tapName: '..' }, 'NetworkDevice.tapName', '1-15 bytes'],
    [{ tapName: undefined }, 'NetworkDevice.tapName', 'a backend'],
    [{ fds: [] }, 'NetworkDevice.fds', 'non-empty'],
    [{ fds: [2] }, 'NetworkDevice.fds', '>= 3'],
    [{ fds: [10, 11] }, 'NetworkDevice.fds', 'one fd per queue'],
    [{ fds: [10, 10], queues: 2 }, 'NetworkDevice.fds', 'distinct'],
    [{ vhostFds: [12] }, 'NetworkDevice.vhostFds', 'together with tap fds'],
    [{ fds: [10], vhostFds: [12, 13] }, 'NetworkDevice.vhostFds', 'one fd per queue'],
    [{ vhostUserSocket: 'relative.sock', tapName: undefined }, 'NetworkDevice.vhostUserSocket', 'absolute path'],
    [{ vhostUserSocket: `/${'s'.repeat(120)}`, tapName: undefined }, 'NetworkDevice.vhostUserSocket', '107 bytes'],
    [{ vhostUserSocket: '/run/vu.sock' }, 'NetworkDevice.vhostUserSocket', 'not both'],
    [{ mtu: 67 }, 'NetworkDevice.mtu', '68 to 65535'],
    [{ mtu: 65536 }, 'NetworkDevice.mtu', '68 to 65535'],
    [{ rateLimit: { rxBitsPerSecond: 7 } }, 'NetworkDevice.rateLimit.rxBitsPerSecond', '>= 8'],
    [{ rateLimit: { txBitsPerSecond: -8 } }, 'NetworkDevice.rateLimit.txBitsPerSecond', '>= 8'],
    [{ rateLimit: { txBitsPerSecond: 1e3 + 0.5 } }, 'NetworkDevice.rateLimit.txBitsPerSecond', 'integer'],
    [{ pciAddress: '0' }, 'NetworkDevice.pciAddress', '1 to 1f'],
    [{ pciAddress: '20' }, 'NetworkDevice.pciAddress', '1 to 1f'],
    [{ pciAddress: '05.8' }, 'NetworkDevice.pciAddress', '1 to 1f'],
    [{ pciAddress: '00:05.0' }, 'NetworkDevice.pciAddress', '1 to 1f'],
  ] as Array<[Partial<NetworkDevice>, string, string]>)('refuses %j naming %s', (change, field, accepted) => {
    const error = invalid(change);
    expect(error.code).toBe('VCNET_INVALID_INPUT');
    expect(error.field).toBe(field);
    expect(error.message).toContain(field);
    expect(error.message).toContain(accepted);
    // The error carries the offending value itself, found by following the field path.
    const path = field.replace('NetworkDevice.', '').split('.');
    const offending = path.reduce<unknown>((node, key) => (node as Record<string, unknown>)?.[key], {
      ...valid,
      ...change,
    });
    expect(error.value).toEqual(offending);
    expect(error.hint).toBeTruthy();
  });
});

describe('parsePciAddress', () => {
  it.each([
    ['5', { slot: 5, function: 0 }],
    ['0x1f', { slot: 31, function: 0 }],
    ['0a.3', { slot: 10, function: 3 }],
  ])('%s', (text, expected) => {
    expect(parsePciAddress(text)).toEqual(expected);
  });
});
