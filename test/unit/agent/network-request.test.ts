/** The checks the server makes before an applier sees a request: each refusal names its field. */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { ARPNeighborSchema, InterfaceSchema, IPFamily, RouteSchema } from '../../../src/agent/generated/types_pb.js';
import { interfaceUpdateOf, neighbourAdditionsOf, routeUpdatesOf } from '../../../src/agent/network-request.js';
import { InvalidInputError } from '../../../src/errors.js';

function fieldOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof InvalidInputError) return error.field;
    throw error;
  }
  return '(accepted)';
}

function messageOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return (error as Error).message;
  }
  return '(accepted)';
}

describe('interface requests', () => {
  it('keeps the name and MTU when they are empty/0, and reads NOARP only from raw_flags', () => {
    const update = interfaceUpdateOf(create(InterfaceSchema, { hwAddr: '02:00:00:00:00:01', rawFlags: 0x1043 }));
    expect(update).toMatchObject({ name: undefined, mtu: undefined, noArp: false, addresses: [] });
  });

  it('finds the link by PCI path when there is no MAC address', () => {
    expect(interfaceUpdateOf(create(InterfaceSchema, { devicePath: '02/0A' })).pciPath).toBe('02/0a');
    expect(fieldOf(() => interfaceUpdateOf(create(InterfaceSchema, {})))).toBe('interface.hwAddr');
    expect(fieldOf(() => interfaceUpdateOf(undefined))).toBe('interface');
  });

  it('refuses the same address twice', () => {
    const twice = create(InterfaceSchema, {
      hwAddr: '02:00:00:00:00:01',
      IPAddresses: [
        { family: IPFamily.v6, address: 'fd00::2', mask: '64' },
        { family: IPFamily.v6, address: 'FD00::2', mask: '64' },
      ],
    });
    expect(fieldOf(() => interfaceUpdateOf(twice))).toBe('interface.IPAddresses[1].address');
  });

  it("takes each address's version from the address, whatever the family says (Kata's agent parses it)", () => {
    const update = interfaceUpdateOf(
      create(InterfaceSchema, {
        hwAddr: '02:00:00:00:00:01',
        IPAddresses: [
          { address: 'fd00::2', mask: '64' },
          { family: IPFamily.v6, address: '10.0.0.2', mask: '24' },
        ],
      }),
    );
    expect(update.addresses).toEqual([
      { version: 6, address: 'fd00::2', prefixLength: 64 },
      { version: 4, address: '10.0.0.2', prefixLength: 24 },
    ]);
  });

  it('refuses a MAC no NIC can have (virtio-net would replace it, and the agent could not find the NIC)', () => {
    for (const hwAddr of ['00:00:00:00:00:00', '01:00:5e:00:00:01', '33:33:00:00:00:01']) {
      expect(fieldOf(() => interfaceUpdateOf(create(InterfaceSchema, { hwAddr })))).toBe('interface.hwAddr');
    }
  });
});

describe('route requests', () => {
  const route = (fields: MessageInitShape<typeof RouteSchema>) => create(RouteSchema, { device: 'eth0', ...fields });

  it('reads default routes, bare destinations and Kata-style sources', () => {
    const [byDefault, host, sourced] = routeUpdatesOf([
      route({ dest: 'default', gateway: '10.0.0.1' }),
      route({ dest: '10.9.9.9' }),
      route({ dest: 'fd01::/64', family: IPFamily.v6, source: 'fd00::2/128' }),
    ]);
    expect(byDefault).toMatchObject({ destination: undefined, destinationLength: 0, gateway: '10.0.0.1' });
    expect(host).toMatchObject({ destination: '10.9.9.9', destinationLength: 32 });
    expect(sourced).toMatchObject({ version: 6, destination: 'fd01::', destinationLength: 64, source: 'fd00::2' });
  });

  it.each([
    [{ dest: '10.0.0.0/33' }, 'routes.Routes[0].dest'],
    [{ dest: '10.0.0.0/8/1' }, 'routes.Routes[0].dest'],
    [{ dest: '10.1.0.0/16', gateway: 'fd00::1' }, 'routes.Routes[0].gateway'],
    [{ dest: 'fd01::/64', family: IPFamily.v6, gateway: '10.0.0.1' }, 'routes.Routes[0].gateway'],
    [{ dest: '10.98.0.1/16' }, 'routes.Routes[0].dest'],
    [{ dest: 'fd01::1/64' }, 'routes.Routes[0].dest'],
    [{ device: '' }, 'routes.Routes[0].device'],
    [{ source: '10.0.0.2/24' }, 'routes.Routes[0].source'],
    [{ scope: 256 }, 'routes.Routes[0].scope'],
    [{ mtu: 10 }, 'routes.Routes[0].mtu'],
    [{ family: 2 as IPFamily }, 'routes.Routes[0].family'],
  ])('refuses %o naming %s', (fields, field) => {
    expect(fieldOf(() => routeUpdatesOf([route(fields)]))).toBe(field);
  });

  it("reads an omitted family (protobuf v4, its zero value) from the first address given, as Kata's agent parses them", () => {
    const [byDestination, byGateway, byFamily] = routeUpdatesOf([
      route({ dest: 'fd01::/64' }),
      route({ dest: '', gateway: 'fe80::1' }),
      route({ dest: '' }),
    ]);
    expect(byDestination).toMatchObject({ version: 6, destination: 'fd01::', destinationLength: 64 });
    expect(byGateway).toMatchObject({ version: 6, destination: undefined, gateway: 'fe80::1' });
    expect(byFamily).toMatchObject({ version: 4, destination: undefined });
  });

  it('reads a default route given as "" (Kata 1.x), "0.0.0.0/0" or "::/0" (current Kata) as the same route', () => {
    const [empty, v4, v6, v6ByFamily] = routeUpdatesOf([
      route({ dest: '', gateway: '10.0.0.1' }),
      route({ dest: '0.0.0.0/0', gateway: '10.0.0.2' }),
      route({ dest: '::/0', gateway: 'fd00::1' }),
      route({ dest: '::/0', family: IPFamily.v6 }),
    ]);
    expect(empty).toMatchObject({ version: 4, destination: undefined, destinationLength: 0 });
    expect(v4).toMatchObject({ version: 4, destination: undefined, destinationLength: 0, gateway: '10.0.0.2' });
    expect(v6).toMatchObject({ version: 6, destination: undefined, destinationLength: 0, gateway: 'fd00::1' });
    expect(v6ByFamily).toMatchObject({ version: 6, destination: undefined, destinationLength: 0 });
    // Both spellings name one route.
    expect(
      fieldOf(() =>
        routeUpdatesOf([route({ dest: '', gateway: '10.0.0.1' }), route({ dest: '0.0.0.0/0', gateway: '10.0.0.1' })]),
      ),
    ).toBe('routes.Routes[1]');
    expect(fieldOf(() => routeUpdatesOf([route({ dest: '0.0.0.0/0', family: IPFamily.v6 })]))).toBe(
      'routes.Routes[0].dest',
    );
  });

  it('names the network a destination with host bits set meant', () => {
    expect(messageOf(() => routeUpdatesOf([route({ dest: '10.98.0.1/16' })]))).toContain('"10.98.0.0/16"');
    expect(messageOf(() => routeUpdatesOf([route({ dest: 'fd01::1/64' })]))).toContain('"fd01::/64"');
  });

  it('refuses a destination as a whole, saying a CIDR or "" (default) is wanted', () => {
    for (const dest of ['10.0.0.0/33', 'bogus', '10.0.0.0/x', '10.0.0.0/8/1'])
      expect(messageOf(() => routeUpdatesOf([route({ dest })]))).toBe(
        `invalid routes.Routes[0].dest: ${JSON.stringify(dest)} (accepted: "" (default route) or an IPv4 ADDRESS/PREFIX with a prefix length 0-32)`,
      );
    expect(messageOf(() => routeUpdatesOf([route({ dest: 'fd00::/129', family: IPFamily.v6 })]))).toContain(
      '"fd00::/129" (accepted: "" (default route) or an IPv6 ADDRESS/PREFIX with a prefix length 0-128)',
    );
  });

  it('refuses a route given twice', () => {
    expect(fieldOf(() => routeUpdatesOf([route({ dest: '10.1.0.0/16' }), route({ dest: '10.1.0.0/16' })]))).toBe(
      'routes.Routes[1]',
    );
  });
});

describe('neighbour requests', () => {
  const neighbour = (
    fields: Partial<{ toIPAddress: { address: string } | undefined; lladdr: string; state: number; flags: number }>,
  ) =>
    create(ARPNeighborSchema, {
      toIPAddress: { address: '10.0.0.1' },
      device: 'eth0',
      lladdr: '02:00:00:00:00:09',
      ...fields,
    });

  it('makes state 0 permanent', () => {
    expect(neighbourAdditionsOf([neighbour({ state: 0 })])[0]!.state).toBe(0x80);
  });

  // Kata's runtime sends the default gateway in the state the pod had it, REACHABLE (2) included,
  // and Kata's agent applies the state as given.
  it.each([0x02, 0x04, 0x40, 0x80])('keeps state %i as given', (state) => {
    expect(neighbourAdditionsOf([neighbour({ state })])[0]!.state).toBe(state);
  });

  it.each([
    [{ toIPAddress: undefined }, 'neighbors.ARPNeighbors[0].toIPAddress'],
    [{ toIPAddress: { address: 'nope' } }, 'neighbors.ARPNeighbors[0].toIPAddress.address'],
    [{ lladdr: '02:00' }, 'neighbors.ARPNeighbors[0].lladdr'],
    [{ state: 0x100 }, 'neighbors.ARPNeighbors[0].state'],
    [{ state: -1 }, 'neighbors.ARPNeighbors[0].state'],
    [{ flags: 512 }, 'neighbors.ARPNeighbors[0].flags'],
  ])('refuses %o naming %s', (fields, field) => {
    expect(fieldOf(() => neighbourAdditionsOf([neighbour(fields)]))).toBe(field);
  });
});
