/** vcnet's JSON (kata-network's shape) <-> the agent's protobuf messages, and what a bad JSON is told. */
import { describe, expect, it } from 'vitest';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';
import {
  interfaceFromJson,
  interfaceToJson,
  KataJsonError,
  neighboursFromJson,
  neighbourToJson,
  routesFromJson,
  routeToJson,
} from '../../../src/agent/kata-network-json.js';
import type { GuestInterface, GuestNeighbour, GuestRoute } from '../../../src/network/guest.js';

const guestInterface: GuestInterface = {
  device: 'eth0',
  name: 'eth0',
  IPAddresses: [
    { family: 0, address: '10.0.0.2', mask: '24' },
    { family: 1, address: 'fd00::2', mask: '64' },
  ],
  mtu: 1450,
  hwAddr: '02:00:ca:fe:00:01',
  devicePath: '02/00',
  type: 'veth',
  raw_flags: 128,
};

function errorOf(action: () => unknown): KataJsonError {
  try {
    action();
  } catch (error) {
    if (error instanceof KataJsonError) return error;
    throw error;
  }
  throw new Error('expected a KataJsonError');
}

describe('interfaces', () => {
  it("reads the network layer's guest interface into the protobuf message", () => {
    const message = interfaceFromJson(guestInterface);
    expect(message.mtu).toBe(1450n);
    expect(message.rawFlags).toBe(128);
    expect(message.devicePath).toBe('02/00');
    expect(message.IPAddresses.map((a) => [a.family, a.address, a.mask])).toEqual([
      [IPFamily.v4, '10.0.0.2', '24'],
      [IPFamily.v6, 'fd00::2', '64'],
    ]);
  });

  it('writes it back the same, with devicePath also under its pre-2025 name pciPath', () => {
    expect(interfaceToJson(interfaceFromJson(guestInterface))).toEqual({ ...guestInterface, pciPath: '02/00' });
  });

  it("reads what Go's encoding/json prints: empty fields left out, null slices, pciPath, family names", () => {
    const message = interfaceFromJson({
      name: 'eth1',
      IPAddresses: [
        { address: '10.1.0.2', mask: '16' },
        { family: 'v6', address: 'fd01::2', mask: '64' },
      ],
      hwAddr: '02:00:00:00:00:02',
      pciPath: '03/00',
    });
    expect(message.IPAddresses.map((a) => a.family)).toEqual([IPFamily.v4, IPFamily.v6]);
    expect(message.devicePath).toBe('03/00');
    expect(message.mtu).toBe(0n);
    expect(interfaceFromJson({ hwAddr: '02:00:00:00:00:02', IPAddresses: null }).IPAddresses).toEqual([]);
  });

  it('ignores unknown fields as Go does, reporting their paths to the caller', () => {
    const ignoredKeys: string[] = [];
    const message = interfaceFromJson({ ...guestInterface, colour: 'x' }, 'interfaces[0]', { ignoredKeys });
    expect(message.hwAddr).toBe(guestInterface.hwAddr);
    expect(ignoredKeys).toEqual(['interfaces[0].colour']);
  });

  it('names a bad nested field with its path, value and what is accepted', () => {
    const error = errorOf(() =>
      interfaceFromJson({ ...guestInterface, IPAddresses: [{ family: 4, address: '10.0.0.2', mask: '24' }] }),
    );
    expect(error.field).toBe('interface.IPAddresses[0].family');
    expect(error.value).toBe(4);
    expect(error.message).toContain('0 or "v4" (IPv4), 1 or "v6" (IPv6)');
  });

  it('lists every problem, not only the first', () => {
    const error = errorOf(() => interfaceFromJson({ mtu: -1, raw_flags: 'NOARP', hwAddr: 7 }));
    expect(error.issues.map((issue) => issue.field).sort()).toEqual([
      'interface.hwAddr',
      'interface.mtu',
      'interface.raw_flags',
    ]);
    expect(error.message).toContain('and 2 more');
  });

  it('refuses devicePath and pciPath that disagree', () => {
    const error = errorOf(() => interfaceFromJson({ ...guestInterface, pciPath: '05/00' }));
    expect(error.field).toBe('interface.pciPath');
  });
});

describe('routes and neighbours', () => {
  const routes: GuestRoute[] = [
    { dest: '10.1.0.0/16', gateway: '', device: 'eth0', source: '', scope: 253, family: 0, flags: 0, mtu: 0 },
    { dest: '', gateway: 'fd00::1', device: 'eth0', source: 'fd00::2', scope: 0, family: 1, flags: 4, mtu: 1400 },
  ];

  it("round-trips the network layer's routes, MTU and flags included", () => {
    const messages = routesFromJson(routes);
    expect(messages[1]).toMatchObject({ family: IPFamily.v6, flags: 4, mtu: 1400, gateway: 'fd00::1' });
    expect(messages.map(routeToJson)).toEqual(routes);
  });

  it('names the route and field at fault', () => {
    const error = errorOf(() => routesFromJson([routes[0], { ...routes[1], scope: 1.5 }]));
    expect(error.field).toBe('routes[1].scope');
    expect(error.value).toBe(1.5);
    expect(error.message).toContain('a route scope 0-255');
    expect(errorOf(() => routesFromJson({ dest: '' })).field).toBe('routes');
  });

  it("round-trips the network layer's neighbours", () => {
    const neighbours: GuestNeighbour[] = [
      {
        toIPAddress: { family: 0, address: '10.0.0.1', mask: '' },
        device: 'eth0',
        lladdr: '02:00:00:00:00:09',
        state: 128,
        flags: 0,
      },
    ];
    expect(neighboursFromJson(neighbours).map(neighbourToJson)).toEqual(neighbours);
    expect(errorOf(() => neighboursFromJson([{ ...neighbours[0], state: 'permanent' }])).field).toBe(
      'neighbours[0].state',
    );
  });
});
