/**
 * One MAC check and one accepted text: the hypervisor's device config, the agent's request and the
 * netlink codec refuse the same bad address the same way.
 */
import { expect, it } from 'vitest';
import { interfaceUpdateOf } from '../../src/agent/network-request.js';
import { InvalidInputError } from '../../src/errors.js';
import { validateNetworkDevice } from '../../src/hypervisor/device.js';
import { isMacAddress, MAC_ADDRESS_ACCEPTED } from '../../src/mac-address.js';
import { AddressFormatError, macToBytes } from '../../src/netlink/codec/address-format.js';

it('accepts six hex octets in either case and nothing else', () => {
  expect(isMacAddress('02:42:AC:11:00:02')).toBe(true);
  for (const text of ['02:42:ac:11:00', '02-42-ac-11-00-02', 'zz:42:ac:11:00:02', '', 7, undefined]) {
    expect(isMacAddress(text), String(text)).toBe(false);
  }
});

it('refuses a bad MAC with the one accepted text everywhere', () => {
  const bad = '02-42-ac-11-00-02';
  const refusals: unknown[] = [];
  const attempt = (run: () => unknown) => {
    try {
      run();
    } catch (error) {
      refusals.push(error);
    }
  };
  attempt(() => validateNetworkDevice({ id: 'net0', tapName: 'tap0', queues: 1, guestMac: bad } as never));
  attempt(() =>
    interfaceUpdateOf({ name: 'eth0', device: '', hwAddr: bad, devicePath: '', mtu: 1500, IPAddresses: [] } as never),
  );
  expect(refusals).toHaveLength(2);
  for (const error of refusals) {
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).accepted).toBe(MAC_ADDRESS_ACCEPTED);
  }
  expect(() => macToBytes(bad)).toThrow(AddressFormatError);
});
