/** vcnet's JSON (kata-network's shape) <-> the agent's protobuf messages, and what a bad JSON is told. */
import { describe, expect, it } from 'vitest';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';
import {
  interfaceFromJson,
  interfaceToJson,
  KataJsonError,
  kataFieldMeant,
  kataIgnoredKeyNote,
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
  it('refuses a v6 family with an IPv4 address, as routes refuse it (it was sent as v4 without a word)', () => {
    const error = errorOf(() =>
      interfaceFromJson({ name: 'x', IPAddresses: [{ family: 1, address: '10.232.90.9', mask: '24' }] }),
    );
    expect(error.issues.map((issue) => issue.field)).toEqual(['interface.IPAddresses[0].family']);
    expect(
      interfaceFromJson({ name: 'x', IPAddresses: [{ family: 1, address: 'fd00::2', mask: '64' }] }).IPAddresses[0]
        ?.family,
    ).toBe(1);
  });

  it('names each refused field once, though zod finds two faults in it (1e21 is no integer and too big)', () => {
    const error = errorOf(() => routesFromJson([{ dest: '10.0.0.0/8', device: 'eth0', scope: 1e21, flags: 1.5 }]));
    expect(error.issues.map((issue) => issue.field)).toEqual(['routes[0].scope', 'routes[0].flags']);
    expect(error.message.match(/routes\[0\]\.scope/g)).toHaveLength(1);
  });

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

  it("ignores keys named like Object.prototype's members as any other unknown key", () => {
    const ignoredKeys: string[] = [];
    const text = `{"name":"eth9","constructor":1,"__proto__":null,"toString":2,"IPAddresses":[{"address":"10.0.0.2","mask":"24","hasOwnProperty":3}]}`;
    const message = interfaceFromJson(JSON.parse(text), 'interface', { ignoredKeys });
    expect(message.name).toBe('eth9');
    expect(ignoredKeys).toEqual([
      'interface.constructor',
      'interface.__proto__',
      'interface.toString',
      'interface.IPAddresses[0].hasOwnProperty',
    ]);
  });

  it('names a bad nested field with its path, value and what is accepted', () => {
    const error = errorOf(() =>
      interfaceFromJson({ ...guestInterface, IPAddresses: [{ family: 4, address: '10.0.0.2', mask: '24' }] }),
    );
    expect(error.field).toBe('interface.IPAddresses[0].family');
    expect(error.value).toBe(4);
    expect(error.message).toContain('0, "v4" or 2 (AF_INET) for IPv4; 1, "v6" or 10 (AF_INET6) for IPv6');
  });

  it("reads Kata 1.x's netlink family numbers: 2 (AF_INET) and 10 (AF_INET6)", () => {
    const message = interfaceFromJson({
      hwAddr: '02:00:00:00:00:02',
      IPAddresses: [
        { Family: 2, Address: '10.1.0.2', Mask: '16' },
        { Family: 10, Address: 'fd01::2', Mask: '64' },
      ],
    });
    expect(message.IPAddresses.map((a) => a.family)).toEqual([IPFamily.v4, IPFamily.v6]);
    const [route] = routesFromJson([{ Dest: '', Gateway: 'fd00::1', Device: 'eth0', Family: 10 }]);
    expect(route?.family).toBe(IPFamily.v6);
    const [neighbour] = neighboursFromJson([{ toIPAddress: { family: 2, address: '10.0.0.1' }, device: 'eth0' }]);
    expect(neighbour?.toIPAddress?.family).toBe(IPFamily.v4);
  });

  it('gives an IPv6 address without a family (or with v4, the zero value) the v6 family', () => {
    const message = interfaceFromJson({
      hwAddr: '02:00:00:00:00:02',
      IPAddresses: [
        { address: 'fd01::2', mask: '64' },
        { family: 0, address: 'fd01::3', mask: '64' },
        { address: '10.1.0.2', mask: '16' },
      ],
    });
    expect(message.IPAddresses.map((a) => a.family)).toEqual([IPFamily.v6, IPFamily.v6, IPFamily.v4]);
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

  // Compared as text, "02/00" and "02.0/00.0" were refused as disagreeing: Kata's agent reads both as
  // the same device.
  it.each([
    ['02/00', '02.0/00.0', '02/00'],
    ['2/0', '02/00', '02/00'],
    ['02/01.1', '02.0/1.1', '02/01.1'],
  ])('takes devicePath %j with pciPath %j, the same PCI path written differently', (devicePath, pciPath, sent) => {
    expect(interfaceFromJson({ ...guestInterface, devicePath, pciPath }).devicePath).toBe(sent);
  });

  // Read into devicePath, a bad pciPath was refused as "invalid interface.devicePath", a key the user
  // never wrote; a bad PciAddr then as "invalid interface.pciPath", no more theirs.
  it.each([
    ['pciPath', 'zz'],
    ['PciAddr', '0x02'],
  ])('refuses a %s that is no PCI path under that name, not devicePath', (key, path) => {
    const { devicePath: _devicePath, ...withoutDevicePath } = guestInterface;
    const error = errorOf(() => interfaceFromJson({ ...withoutDevicePath, [key]: path }));
    expect(error.field).toBe(`interface.${key}`);
    expect(error.message).toContain(`"${path}"`);
    expect(error.message).toContain('a PCI path of slots in hex (00-1f)');
  });

  it('takes an s390x CCW device under pciPath, as under devicePath', () => {
    const { devicePath: _devicePath, ...withoutDevicePath } = guestInterface;
    expect(interfaceFromJson({ ...withoutDevicePath, pciPath: '0.0.0001' }).devicePath).toBe('0.0.0001');
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

  it("gives a route without a family the one its addresses have, as Kata's agent needs to parse them", () => {
    const messages = routesFromJson([
      { dest: '', gateway: 'fd00:77::1', device: 'eth0' },
      { dest: 'fd00:78::/64', device: 'eth0' },
      { dest: '10.2.0.0/16', gateway: '10.0.0.1', device: 'eth0' },
      { source: 'fd00::2', device: 'eth0', scope: 253 },
    ]);
    expect(messages.map((route) => route.family)).toEqual([IPFamily.v6, IPFamily.v6, IPFamily.v4, IPFamily.v6]);
    expect(routeToJson(messages[0]!)).toMatchObject({ family: 1, gateway: 'fd00:77::1' });
  });

  it('sends dest "default" (as iproute2 takes it) as the family\'s default, as Kata sends it', () => {
    const messages = routesFromJson([
      { dest: 'default', gateway: '10.0.0.1', device: 'eth0' },
      { dest: 'default', gateway: 'fd00::1', device: 'eth0' },
      { dest: 'default', device: 'eth0', family: 'v6' },
    ]);
    expect(messages.map((route) => [route.dest, route.family])).toEqual([
      ['0.0.0.0/0', IPFamily.v4],
      ['::/0', IPFamily.v6],
      ['::/0', IPFamily.v6],
    ]);
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
    // Kata 1.x neighbours, like its routes, may leave the family out: the address gives it.
    const [v6] = neighboursFromJson([{ toIPAddress: { address: 'fd00::1' }, device: 'eth0' }]);
    expect(v6?.toIPAddress?.family).toBe(IPFamily.v6);
    expect(errorOf(() => neighboursFromJson([{ ...neighbours[0], state: 'permanent' }])).field).toBe(
      'neighbours[0].state',
    );
  });
});

describe("every field of Kata 4.1.0's types.proto network messages", () => {
  // The json tags of Kata's generated Go structs (types.pb.go), every field set.
  const goInterface = {
    device: 'eth0',
    name: 'eth0',
    IPAddresses: [{ family: 1, address: 'fd00::2', mask: '64' }],
    mtu: 1500,
    hwAddr: '02:00:ca:fe:00:01',
    devicePath: '02/00',
    type: 'veth',
    raw_flags: 128,
  };
  const goRoute = {
    dest: 'fd01::/64',
    gateway: 'fd00::1',
    device: 'eth0',
    source: 'fd00::2',
    scope: 0,
    family: 1,
    flags: 0,
    mtu: 1400,
  };
  const goNeighbour = {
    toIPAddress: { family: 0, address: '10.0.0.1', mask: '' },
    device: 'eth0',
    lladdr: '02:00:00:00:00:01',
    state: 128,
    flags: 0,
  };

  it("reads the Go runtime's JSON of each with no key ignored", () => {
    const ignoredKeys: string[] = [];
    const message = interfaceFromJson(goInterface, 'interface', { ignoredKeys });
    expect(interfaceToJson(message)).toEqual({ ...goInterface, pciPath: '02/00' });
    expect(routeToJson(routesFromJson([goRoute], 'routes', { ignoredKeys })[0] as never)).toEqual(goRoute);
    expect(neighbourToJson(neighboursFromJson([goNeighbour], 'neighbours', { ignoredKeys })[0] as never)).toEqual(
      goNeighbour,
    );
    expect(ignoredKeys).toEqual([]);
  });

  it("reads type_, the name Kata's Rust protocol crate gives type in its serde JSON (kata-agent-ctl, genpolicy)", () => {
    const { type, ...rest } = goInterface;
    const ignoredKeys: string[] = [];
    const message = interfaceFromJson({ ...rest, type_: type }, 'interface', { ignoredKeys });
    expect(message.type).toBe('veth');
    expect(ignoredKeys).toEqual([]);
  });

  it('reads type, as Go does, when type_ is given beside it, and reports type_ as ignored, in either order', () => {
    const { type: _type, ...rest } = goInterface;
    for (const given of [
      { ...rest, type: 'veth', type_: 'tap' },
      { ...rest, type_: 'tap', type: 'veth' },
    ]) {
      const ignoredKeys: string[] = [];
      const message = interfaceFromJson(given, 'interface', { ignoredKeys });
      expect(message.type, JSON.stringify(given)).toBe('veth');
      expect(ignoredKeys).toEqual(['interface.type_']);
    }
  });

  it('reads the later of two old names for one field and reports the earlier as ignored', () => {
    const { type: _type, ...rest } = goInterface;
    const ignoredKeys: string[] = [];
    const message = interfaceFromJson({ ...rest, linkType: 'tap', type_: 'veth' }, 'interface', { ignoredKeys });
    expect(message.type).toBe('veth');
    expect(ignoredKeys).toEqual(['interface.linkType']);
  });
});

// Ignored as Go ignores them, a typo's key was only named: `routes[0].gatway` left the route without a
// gateway and the warning did not say which field was meant.
describe('kataFieldMeant', () => {
  it.each([
    ['routes[0].gatway', 'gateway'],
    ['interface.nmae', 'name'],
    ['interface.hwadr', 'hwAddr'],
    ['interface.IPAddresses[1].adress', 'address'],
    ['neighbours[2].toIPAddress.mask_', 'mask'],
    ['neighbours[0].lladr', 'lladdr'],
    // The message a key sits in is found as Go matched the keys above it: a long s (U+017F) folds to s.
    ['interface.IPAddre\u017f\u017fes[0].adress', 'address'],
    ['neighbours[0].toIPAddre\u017f\u017f.maks', 'mask'],
  ])('%s: %s', (path, meant) => {
    expect(kataFieldMeant(path)).toBe(meant);
  });

  it('names none for a key far from every field of its message', () => {
    expect(kataFieldMeant('interface.colour')).toBeUndefined();
    expect(kataFieldMeant('interface.vhostUserSocket')).toBeUndefined();
    // A field of another message is not offered: `state` is a neighbour's.
    expect(kataFieldMeant('interface.stat')).toBeUndefined();
  });
});

// The warning's note beside each ignored key: an alias beside its field is no typo.
describe('kataIgnoredKeyNote', () => {
  it('says an alias is another name of a field given again, and a near miss which field it meant', () => {
    expect(kataIgnoredKeyNote('interface.linkType')).toBe('another name of type, given again');
    expect(kataIgnoredKeyNote('interface.RAWFLAGS')).toBe('another name of raw_flags, given again');
    // The path as the JSON spelled it.
    expect(kataIgnoredKeyNote('interface.ipaddresses[0].adress')).toBe('did you mean address?');
    expect(kataIgnoredKeyNote('interface.colour')).toBeUndefined();
  });
});
