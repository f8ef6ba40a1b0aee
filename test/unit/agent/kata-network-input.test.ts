/**
 * kata-network input as Kata reads it: Go's key matching, unknown keys ignored (and reported), the
 * input bounds, the kernel's name rules, and what add-iface makes of Kata's own example (§6), the
 * seed-era JSON with `device`, and the 1.x capitalised form.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_KATA_JSON_BYTES } from '../../../src/agent/kata-json-limits.js';
import {
  interfaceFromJson,
  interfaceRequestFromJson,
  neighboursFromJson,
  parseKataJsonText,
  routesFromJson,
  routesRequestFromJson,
} from '../../../src/agent/kata-network-json.js';
import { InvalidInputError } from '../../../src/errors.js';
import { checkLinkName, linkNameProblem } from '../../../src/netlink/link-name.js';
import { isVcnetDevice } from '../../../src/network/link-name.js';
import { VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import {
  type ExistingEndpoint,
  IncorrectLinkTypeError,
  InterfaceAlreadyAddedError,
  resolveAddInterfaceRequest,
} from '../../../src/sandbox/add-interface-request.js';
import { info, link } from '../network/fixtures.js';

/** Kata's current add-iface example (research §6): `name` is the link, device is unused. */
const kataExample = {
  name: 'eth1',
  hwAddr: '02:42:ac:11:00:09',
  mtu: 1500,
  type: 'tap',
  IPAddresses: [{ family: 0, address: '172.17.0.9', mask: '16' }],
};
/** vcnet's seed-era form: device names the pod link, name the guest NIC. */
const seedExample = {
  device: 'eth7',
  name: 'net7',
  IPAddresses: [{ family: 0, address: '10.77.0.2', mask: '24' }],
  mtu: 1400,
};
/** kata 1.x `types.Interface` had no JSON tags: the Go field names, capitalised. */
const capitalisedExample = {
  Device: 'eth7',
  Name: 'eth7',
  IPAddresses: [{ Family: 0, Address: '10.77.0.2', Mask: '24' }],
  Mtu: 1400,
  RawFlags: 0,
  HwAddr: '02:42:AC:11:00:07',
  PciAddr: '',
  LinkType: 'veth',
};

const pod = [
  info({ link: link({ index: 2, name: 'eth0', address: '02:42:ac:11:00:02' }) }),
  info({ link: link({ index: 7, name: 'eth7', address: '02:42:ac:11:00:07' }) }),
  info({ link: link({ index: 8, name: 'mv0', kind: 'macvlan', address: '02:42:ac:11:00:08' }) }),
  info({ link: link({ index: 9, name: 'tap0_kata', kind: 'tun', tun: { type: 'tap' } }) }),
  info({ link: link({ index: 10, name: 'grouped', group: VCNET_LINK_GROUP, address: '02:42:ac:11:00:0a' }) }),
];
const existing = [{ name: 'eth0', hardwareAddress: '02:42:ac:11:00:02', properties: { link: { name: 'eth0' } } }];

function fieldOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    if (error instanceof InvalidInputError) return `${error.field}: ${error.message}`;
    throw error;
  }
  throw new Error('expected an InvalidInputError');
}

/** The field alone of the error `action` throws. */
const fieldNamed = (action: () => unknown): string => fieldOf(action).split(': ')[0] ?? '';

const resolve = (json: unknown) => resolveAddInterfaceRequest(interfaceFromJson(json), pod, existing);

describe('a request that names no link', () => {
  it('says interface.name was not given, not that "" was', () => {
    for (const json of [{ mtu: 1500 }, { name: '', device: '' }]) {
      const message = fieldOf(() => resolve(json));
      expect(message).toContain('interface.name: not given');
      expect(message).not.toContain('""');
    }
  });
});

describe('Go-style key matching', () => {
  it('reads the 1.x capitalised form, including LinkType, RawFlags and PciAddr', () => {
    const message = interfaceFromJson(capitalisedExample);
    expect(message.device).toBe('eth7');
    expect(message.name).toBe('eth7');
    expect(message.mtu).toBe(1400n);
    expect(message.hwAddr).toBe('02:42:AC:11:00:07');
    expect(message.type).toBe('veth');
    expect(message.IPAddresses[0]?.address).toBe('10.77.0.2');
  });

  it('matches keys in any case and reads protobuf-JSON rawFlags', () => {
    const message = interfaceFromJson({ NAME: 'eth1', hwaddr: '02:00:00:00:00:01', MTU: 9000, rawFlags: 128 });
    expect([message.name, message.hwAddr, message.mtu, message.rawFlags]).toEqual([
      'eth1',
      '02:00:00:00:00:01',
      9000n,
      128,
    ]);
  });

  it('lets a later key win over an earlier one for the same field, as Go does', () => {
    expect(interfaceFromJson({ mtu: 1400, Mtu: 1450 }).mtu).toBe(1450n);
  });

  it('ignores unknown keys at any depth and reports each path', () => {
    const ignoredKeys: string[] = [];
    const message = interfaceFromJson(
      {
        name: 'eth1',
        vhostUserSocket: '/tmp/x',
        IPAddresses: [{ address: '10.0.0.2', mask: '24', colour: 'blue' }],
      },
      'interface',
      { ignoredKeys },
    );
    expect(message.name).toBe('eth1');
    expect(ignoredKeys).toEqual(['interface.vhostUserSocket', 'interface.IPAddresses[0].colour']);
  });

  it('reads 1.x routes ({Dest, Gateway, Device, Source, Scope})', () => {
    const [route] = routesFromJson([{ Dest: '10.0.0.0/8', Gateway: '10.77.0.1', Device: 'eth7', Scope: 0 }]);
    expect([route?.dest, route?.gateway, route?.device]).toEqual(['10.0.0.0/8', '10.77.0.1', 'eth7']);
  });

  it('still refuses a known key with a bad value, naming it as the JSON spelled it', () => {
    expect(fieldOf(() => interfaceFromJson({ Mtu: 'big' }))).toMatch(/^interface\.Mtu/);
  });

  // Read under the schema's name, a bad value was refused under it: {"PciAddr":"zz"} as
  // "invalid interface.pciPath", a key the user never wrote.
  it.each([
    [{ PciAddr: 'zz' }, 'interface.PciAddr'],
    [{ pciaddr: 'zz' }, 'interface.pciaddr'],
    [{ PCIPATH: 'zz' }, 'interface.PCIPATH'],
    [{ DevicePath: 'zz' }, 'interface.DevicePath'],
    [{ PciAddr: 5 }, 'interface.PciAddr'],
    [{ devicePath: '02/00', PciAddr: '03/00' }, 'interface.PciAddr'],
    [{ LinkType: 5 }, 'interface.LinkType'],
    [{ type_: 5 }, 'interface.type_'],
    [{ RawFlags: -1 }, 'interface.RawFlags'],
    [{ IPADDRESSES: [{ Family: 'x', address: '10.0.0.1', mask: '24' }] }, 'interface.IPADDRESSES[0].Family'],
    [{ ipaddresses: [{ family: 1, address: '10.0.0.1', mask: '24' }] }, 'interface.ipaddresses[0].family'],
  ])('an alias or another case with a bad value: %j is refused under the key the JSON used', (json, field) => {
    expect(fieldNamed(() => interfaceFromJson(json))).toBe(field);
  });

  it('the key the JSON used in routes and neighbours too; a later key for a field replaces an earlier spelling', () => {
    expect(fieldNamed(() => routesFromJson([{ dest: '' }, { Dest: 5 }]))).toBe('routes[1].Dest');
    expect(fieldNamed(() => neighboursFromJson([{ ToIPAddress: { Address: 5 } }]))).toBe(
      'neighbours[0].ToIPAddress.Address',
    );
    expect(fieldNamed(() => interfaceFromJson({ LinkType: 'veth', type: 5 }))).toBe('interface.type');
  });
});

describe("the agent requests Kata's runtime logs (protobuf JSON)", () => {
  // kata_agent.go logs each request it sends as protojson.Marshal writes it (trace level, "sending
  // request"): the request wrapper, a 64-bit mtu as a string, v6 by its enum name, v4 (zero) left out.
  const updateInterface =
    '{"interface":{"device":"eth7", "name":"eth7", "IPAddresses":[{"address":"10.77.0.2", "mask":"24"}, ' +
    '{"family":"v6", "address":"fd00:77::2", "mask":"64"}], "mtu":"1400", "hwAddr":"02:42:ac:11:00:07", ' +
    '"devicePath":"02/00", "type":"veth", "rawFlags":128}}';
  const updateRoutes =
    '{"routes":{"Routes":[{"dest":"10.77.0.0/24", "device":"eth7", "source":"10.77.0.2", "scope":253}, ' +
    '{"gateway":"10.77.0.1", "device":"eth7"}, {"dest":"::/0", "gateway":"fe80::1", "device":"eth7", "family":"v6"}]}}';

  it('reads an UpdateInterfaceRequest: the Interface inside, its mtu from the string', () => {
    const ignoredKeys: string[] = [];
    const message = interfaceRequestFromJson(parseKataJsonText(updateInterface, 'interface'), { ignoredKeys });
    expect(ignoredKeys).toEqual([]);
    expect([message.name, message.mtu, message.hwAddr, message.type, message.rawFlags]).toEqual([
      'eth7',
      1400n,
      '02:42:ac:11:00:07',
      'veth',
      128,
    ]);
    expect(message.IPAddresses.map((address) => [address.family, address.address, address.mask])).toEqual([
      [0, '10.77.0.2', '24'],
      [1, 'fd00:77::2', '64'],
    ]);
    // What add-iface makes of it: the guest NIC's MTU, not a refusal of "1400".
    const request = resolve(JSON.parse(updateInterface).interface);
    expect(request.info.link.mtu).toBe(1400);
  });

  it('reads an UpdateRoutesRequest: its Routes, and {} (no routes, as protojson leaves them out) as the empty set', () => {
    const routes = routesRequestFromJson(parseKataJsonText(updateRoutes, 'routes')) ?? [];
    expect(routes.map((route) => [route.dest, route.gateway, route.source, route.scope, route.family])).toEqual([
      ['10.77.0.0/24', '', '10.77.0.2', 253, 0],
      ['', '10.77.0.1', '', 0, 0],
      ['::/0', 'fe80::1', '', 0, 1],
    ]);
    expect(routesRequestFromJson({ routes: {} })).toEqual([]);
    // A Routes message with a misspelt Routes is not the empty set: that would remove every route.
    expect(fieldNamed(() => routesRequestFromJson({ routes: { Rotues: [] } }))).toBe('routes');
  });

  it('reads every integer from a decimal string, as protobuf JSON does, and still refuses what is no integer', () => {
    const [route] = routesFromJson([{ dest: '10.0.0.0/8', device: 'eth7', scope: '253', flags: '4', mtu: '1300' }]);
    expect([route?.scope, route?.flags, route?.mtu]).toEqual([253, 4, 1300]);
    expect(interfaceFromJson({ name: 'eth1', raw_flags: '128' }).rawFlags).toBe(128);
    for (const mtu of ['1.5', '0x578', ' 1400', '1e3', '']) {
      expect(fieldOf(() => interfaceFromJson({ name: 'eth1', mtu }))).toMatch(/^interface\.mtu/);
    }
    expect(fieldOf(() => routesFromJson([{ device: 'eth7', scope: '-1' }]))).toMatch(/^routes\[0\]\.scope/);
  });

  it('takes nothing else for a request: a key beside it, or one that is no object, is read as before', () => {
    const ignoredKeys: string[] = [];
    expect(interfaceRequestFromJson({ interface: { name: 'eth1' }, mtu: 1400 }, { ignoredKeys }).mtu).toBe(1400n);
    expect(ignoredKeys).toEqual(['interface.interface']);
    // A list under "routes" is the Routes message, its key folded as Go folds it (the next test).
    expect(fieldNamed(() => routesRequestFromJson({ routes: 5 }))).toBe('routes');
    expect(routesRequestFromJson([{ device: 'eth0' }])?.map((route) => route.device)).toEqual(['eth0']);
    expect(interfaceRequestFromJson({ name: 'eth1' }).name).toBe('eth1');
  });

  it("matches the request's key as every other key, as Go's encoding/json matches the request's field", () => {
    // Kata writes it "interface" and "routes" (protojson, serde), and so vcnet read only that spelling:
    // {"Interface":{...}} was taken for an Interface with one unknown key, an empty Interface, and
    // {"Routes":{"Routes":[...]}} refused as "routes: {}", a value nobody wrote. Go decodes both into
    // the request (UpdateInterfaceRequest's field is tagged "interface", matched as Go folds keys).
    for (const key of ['Interface', 'INTERFACE', 'interface']) {
      const ignoredKeys: string[] = [];
      const text = updateInterface.replace('{"interface":', `{"${key}":`);
      const message = interfaceRequestFromJson(parseKataJsonText(text, 'interface'), { ignoredKeys });
      expect({ key, name: message.name, mtu: message.mtu, ignoredKeys }).toEqual({
        key,
        name: 'eth7',
        mtu: 1400n,
        ignoredKeys: [],
      });
    }
    // Two spellings of the key: the later message decoded into the earlier, as Go decodes it.
    const merged = interfaceRequestFromJson(
      parseKataJsonText('{"interface":{"name":"eth1","mtu":1300},"Interface":{"mtu":"1400"}}', 'interface'),
    );
    expect([merged.name, merged.mtu]).toEqual(['eth1', 1400n]);
    // A field of the message inside is named as before, whatever the request's key was spelled.
    expect(fieldNamed(() => interfaceRequestFromJson({ Interface: { name: 5 } }))).toBe('interface.name');
    for (const key of ['Routes', 'ROUTES', 'Route\u017f']) {
      const text = updateRoutes.replace('{"routes":', `{"${key}":`);
      const routes = routesRequestFromJson(parseKataJsonText(text, 'routes'));
      expect({ key, devices: routes?.map((route) => route.device) }).toEqual({
        key,
        devices: ['eth7', 'eth7', 'eth7'],
      });
      expect(routesRequestFromJson({ [key]: {} })).toEqual([]);
      // A misspelt Routes under it is refused, not the empty set (it would remove every route).
      expect(fieldNamed(() => routesRequestFromJson({ [key]: { Rotues: [] } }))).toBe('routes');
    }
    // A letter Go folds onto no ASCII one (the Cyrillic \u0455) matches nothing: no request, refused.
    expect(fieldNamed(() => routesRequestFromJson({ 'Route\u0455': { Routes: [] } }))).toBe('routes');
  });
});

describe('the agent\'s Routes message, {"Routes": [...]}', () => {
  it("matches its key as Go's encoding/json matches grpc.Routes' field: any case, and the long s for s", () => {
    // Routes is Kata's message (agent.proto), so its key folds as inside {"routes":{"Routes":[...]}}:
    // {"Route\u017f":[...]} was refused as no list, where Go reads it.
    for (const key of ['Routes', 'routes', 'ROUTES', 'Route\u017f']) {
      const ignoredKeys: string[] = [];
      const routes = routesRequestFromJson(parseKataJsonText(`{"${key}":[{"device":"eth0"}],"colour":1}`, 'routes'), {
        ignoredKeys,
      });
      expect({ key, devices: routes?.map((route) => route.device), ignoredKeys }).toEqual({
        key,
        devices: ['eth0'],
        ignoredKeys: ['routes.colour'],
      });
    }
    // A nil list changes nothing, under any spelling of the key; [] is the empty set.
    expect(routesRequestFromJson({ ROUTES: null })).toBeUndefined();
    expect(routesRequestFromJson({ routes: [] })).toEqual([]);
    // A misspelling, or a letter Go folds onto no ASCII one (the Cyrillic \u0455), is no Routes: refused, not the empty set.
    for (const key of ['Rotues', 'Route\u0455']) {
      expect(fieldNamed(() => routesRequestFromJson({ [key]: [] }))).toBe('routes');
    }
  });
});

describe('JSON null in a field', () => {
  it('is the zero value, as Go and protobuf JSON read it (jq writes null for a key its input lacks)', () => {
    // jq '{name, hwAddr, mtu, type, IPAddresses}' over {"name":"eth7"}.
    const fromJq = { name: 'eth7', hwAddr: null, mtu: null, type: null, IPAddresses: null };
    const message = interfaceFromJson(fromJq);
    expect([message.name, message.hwAddr, message.mtu, message.type, message.IPAddresses]).toEqual([
      'eth7',
      '',
      0n,
      '',
      [],
    ]);
    // What add-iface makes of it: eth7 with its own MAC and MTU, as if the keys were left out.
    expect(resolve(fromJq)).toEqual(resolve({ name: 'eth7' }));
    const [route] = routesFromJson([{ dest: '10.0.0.0/8', gateway: null, device: 'eth7', family: null, scope: null }]);
    expect([route?.gateway, route?.family, route?.scope]).toEqual(['', 0, 0]);
    // A null route is no route: refused, not read as an empty one (Kata's runtime would send a nil entry).
    expect(fieldOf(() => routesFromJson([null]))).toMatch(/^routes\[0\]/);
  });
});

describe('interface MTU', () => {
  it('1.5 and 70000 are refused with the same accepted range', () => {
    const accepted = (action: () => unknown) => {
      try {
        action();
      } catch (error) {
        if (error instanceof InvalidInputError) return `${error.field}: ${error.accepted}`;
        throw error;
      }
      throw new Error('expected an InvalidInputError');
    };
    const fraction = accepted(() => resolve({ name: 'eth7', mtu: 1.5 }));
    const tooLarge = accepted(() => resolve({ name: 'eth7', mtu: 70000 }));
    expect(fraction).toBe('interface.mtu: an integer: 0 (unchanged) or 68-65535');
    expect(tooLarge).toBe(fraction);
  });
});

describe('input bounds', () => {
  it('refuses JSON nested deeper than the bound, without touching the stack', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(fieldOf(() => parseKataJsonText(deep, 'interface'))).toMatch(/^interface: .*nested at most/);
  });

  it('does not count brackets inside strings', () => {
    expect(parseKataJsonText(`{"name": "${'['.repeat(100)}"}`, 'interface')).toEqual({ name: '['.repeat(100) });
  });

  it('reads a key given twice in one object as Go does: the later one wins, at its own place', () => {
    // Found by fuzzing del-iface: JSON.parse kept the later "name" at the first one's place, so
    // "Name" (after it) won and del-iface removed eth0, where Go reads name 0 last and refuses it.
    const text = '{"name":"eth9","Name":"eth0","name":0}';
    expect(Object.entries(parseKataJsonText(text, 'interface') as object)).toEqual([
      ['Name', 'eth0'],
      ['name', 0],
    ]);
    expect(fieldOf(() => interfaceFromJson(parseKataJsonText(text, 'interface')))).toMatch(
      /^interface\.name: invalid interface\.name: 0 /,
    );
    // Nested objects, escaped spellings of one key, and whitespace before the colon.
    expect(parseKataJsonText('[{"a":1,"b":{"c":1,"c" :2},"\\u0061":3}, {"a":4}]', 'routes') as object).toEqual([
      { b: { c: 2 }, a: 3 },
      { a: 4 },
    ]);
    expect(Object.keys((parseKataJsonText('{"a":1,"b":2,"a":3}', 'interface') as object[])!)).toEqual(['b', 'a']);
    // A string value that looks like a key is not one.
    expect(parseKataJsonText('{"a":"a","b":["a","a"]}', 'interface')).toEqual({ a: 'a', b: ['a', 'a'] });
  });

  it('refuses an earlier value of a key given again that does not fit its field, as Go does, naming where it is', () => {
    // Go's encoding/json decodes each occurrence in turn and refuses the object on a type error:
    // vcnet dropped the earlier value unread and took "eth0".
    const read = (text: string) => interfaceFromJson(parseKataJsonText(text, 'interface'));
    let refusal: unknown;
    try {
      read('{"name":0,"name":"eth0"}');
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(InvalidInputError);
    expect((refusal as InvalidInputError).message).toBe(
      'invalid interface.name (the "name" at position 1 (line 1 column 2), which a later "name" overwrites): 0 (accepted: a link name)',
    );
    expect((refusal as InvalidInputError).hint).toMatch(/^Kata's runtime \(Go's encoding\/json\) reads every value/);
    // Another case of the key, a nested message, a list of them, and a route and neighbour field.
    expect(fieldNamed(() => read('{"Name":0,"name":"eth0"}'))).toBe(
      'interface.Name (the "Name" at position 1 (line 1 column 2), which a later "name" overwrites)',
    );
    expect(fieldNamed(() => read('{"name":"eth0",\n"IPAddresses":[{"family":"x"}],"IPAddresses":[]}'))).toBe(
      'interface.IPAddresses[0].family (the "IPAddresses" at position 16 (line 2 column 1), which a later "IPAddresses" overwrites)',
    );
    expect(fieldNamed(() => read('{"mtu":-1,"mtu":1500,"name":"eth0"}'))).toMatch(
      /^interface\.mtu \(the "mtu" at position 1 /,
    );
    expect(fieldNamed(() => routesFromJson(parseKataJsonText('[{"scope":"x","scope":0}]', 'routes')))).toMatch(
      /^routes\[0\]\.scope \(the "scope" at position 2 /,
    );
    const neighbours = '[{"toIPAddress":{"address":5},"toIPAddress":{"address":"10.0.0.2"}}]';
    expect(fieldNamed(() => neighboursFromJson(parseKataJsonText(neighbours, 'neighbours')))).toMatch(
      /^neighbours\[0\]\.toIPAddress\.address \(the "address" at position 17 /,
    );
    // An object a library caller built has no positions: the keys still say which.
    expect(fieldNamed(() => interfaceFromJson({ Name: 0, name: 'eth0' }))).toBe(
      'interface.Name (the "Name", which a later "name" overwrites)',
    );
    // Well-typed duplicates: the later one wins. Aliases are no field of Go's: not checked.
    expect(read('{"name":"eth1","name":"eth0"}').name).toBe('eth0');
    expect(read('{"name":"eth0","linkType":5,"type":"tap"}').type).toBe('tap');
  });

  it('reads a null or a message given again as Go does: null leaves a string or number, a message is decoded into the earlier one', () => {
    const read = (text: string) => interfaceFromJson(parseKataJsonText(text, 'interface'));
    expect(read('{"name":"eth0","name":null}').name).toBe('eth0');
    expect(read('{"name":"eth0","mtu":1400,"mtu":null}').mtu).toBe(1400n);
    const addresses = (text: string) => read(text).IPAddresses.map((address) => `${address.address}/${address.mask}`);
    // Go reuses the element's struct: mask 24 stays; the later list's length is the length.
    expect(
      addresses(
        '{"name":"e","IPAddresses":[{"address":"10.0.0.1","mask":"24"},{"address":"10.0.0.3"}],"IPAddresses":[{"address":"10.0.0.2"}]}',
      ),
    ).toEqual(['10.0.0.2/24']);
    // null empties the list (a nil slice): nothing is left to decode into.
    expect(
      addresses(
        '{"name":"e","IPAddresses":[{"address":"10.0.0.1","mask":"24"}],"IPAddresses":null,"IPAddresses":[{"address":"10.0.0.2"}]}',
      ),
    ).toEqual(['10.0.0.2/']);
    const neighbour = neighboursFromJson(
      parseKataJsonText(
        '[{"toIPAddress":{"address":"10.0.0.1","mask":"24"},"toIPAddress":{"address":"10.0.0.2","mask":null}}]',
        'n',
      ),
    )[0];
    expect(`${neighbour?.toIPAddress?.address}/${neighbour?.toIPAddress?.mask}`).toBe('10.0.0.2/24');
  });

  it("reads a request's key given twice as Go decodes it into the request: the later message into the earlier", () => {
    // Go's encoding/json decodes each "interface" into the one *Interface in turn: fields the later
    // one leaves out keep the earlier one's values. vcnet took the later message alone (name "").
    const request = (text: string) => interfaceRequestFromJson(parseKataJsonText(text, 'interface'));
    const merged = request(
      '{"interface":{"name":"eth0","mtu":1400,"IPAddresses":[{"address":"10.0.0.1","mask":"24"}]},' +
        '"interface":{"hwAddr":"02:00:00:00:00:01","IPAddresses":[{"address":"10.0.0.2"}]}}',
    );
    expect([merged.name, merged.mtu, merged.hwAddr]).toEqual(['eth0', 1400n, '02:00:00:00:00:01']);
    expect(merged.IPAddresses.map((address) => `${address.address}/${address.mask}`)).toEqual(['10.0.0.2/24']);
    // An earlier value that is no object refuses the request (Go: cannot unmarshal number into
    // *Interface); it was dropped unread.
    expect(fieldNamed(() => request('{"interface":5,"interface":{"name":"eth0"}}'))).toBe(
      'interface (the "interface" at position 1 (line 1 column 2), which a later "interface" overwrites)',
    );
    // A bad field inside the earlier message, and a later null (Go's nil *Interface: no interface).
    expect(fieldNamed(() => request('{"interface":{"name":0},"interface":{"name":"eth0"}}'))).toMatch(
      /^interface\.name \(the "name" at position 14 /,
    );
    expect(fieldOf(() => request('{"interface":{"name":"eth0"},"interface":null}'))).toMatch(/^interface: .*null/);
    const routes = (text: string) =>
      routesRequestFromJson(parseKataJsonText(text, 'routes'))?.map(
        (route) => `${route.dest} ${route.device} ${route.scope}`,
      );
    const first =
      '{"Routes":[{"dest":"10.0.0.0/8","device":"eth0","scope":253},{"dest":"10.1.0.0/16","device":"eth0"}]}';
    expect(routes(`{"routes":${first},"routes":{"Routes":[{"device":"eth1"}]}}`)).toEqual(['10.0.0.0/8 eth1 253']);
    expect(routes('{"Routes":[{"dest":"10.0.0.0/8","device":"eth0"}],"Routes":[{"device":"eth1"}]}')).toEqual([
      '10.0.0.0/8 eth1 0',
    ]);
    // {} leaves out Routes: decoded into the earlier message, it changes nothing.
    expect(routes(`{"routes":${first},"routes":{}}`)).toEqual(['10.0.0.0/8 eth0 253', '10.1.0.0/16 eth0 0']);
    expect(fieldNamed(() => routes('{"routes":5,"routes":{"Routes":[]}}'))).toMatch(
      /^routes \(the "routes" at position 1 /,
    );
    expect(fieldNamed(() => routes('{"Routes":[{"scope":"x"}],"Routes":[]}'))).toMatch(
      /^routes\[0\]\.scope \(the "Routes" at position 1 /,
    );
  });

  it("reuses a list's elements past its end, as Go's slice decoding does, when the key comes a third time", () => {
    // decode.go array(): a list is decoded into the slice already there, element by element (each a
    // pointer, decoded into), and SetLen cuts the length but keeps the backing array; a later, longer
    // list reaches those elements again. [] makes a new slice (MakeSlice(0, 0)), null a nil one.
    const addresses = (lists: string[]) =>
      interfaceFromJson(
        parseKataJsonText(`{"name":"e",${lists.map((list) => `"IPAddresses":${list}`).join(',')}}`, 'interface'),
      ).IPAddresses.map((address) => `${address.address}/${address.mask}`);
    const ab = '[{"address":"10.0.0.1","mask":"24"},{"address":"10.0.0.3","mask":"16"}]';
    const c = '[{"address":"10.0.0.2"}]';
    const de = '[{"address":"10.0.0.4"},{"address":"10.0.0.5"}]';
    // Go: element 0 is a then c then d (mask 24); element 1 is b, hidden by [c], then e (mask 16).
    expect(addresses([ab, c, de])).toEqual(['10.0.0.4/24', '10.0.0.5/16']);
    expect(addresses([ab, '[]', de])).toEqual(['10.0.0.4/', '10.0.0.5/']);
    expect(addresses([ab, 'null', de])).toEqual(['10.0.0.4/', '10.0.0.5/']);
    // The routes of a Routes message given three times, the same way.
    const routes = routesRequestFromJson(
      parseKataJsonText(
        '{"Routes":[{"dest":"10.0.0.0/8","device":"eth0"},{"dest":"10.1.0.0/16","device":"eth0","scope":253}],' +
          '"Routes":[{"device":"eth1"}],"Routes":[{"device":"eth2"},{"device":"eth3"}]}',
        'routes',
      ),
    );
    expect(routes?.map((route) => `${route.dest} ${route.device} ${route.scope}`)).toEqual([
      '10.0.0.0/8 eth2 0',
      '10.1.0.0/16 eth3 253',
    ]);
    // An element a shorter list leaves past its end was decoded all the same: one that does not fit refuses the object.
    expect(
      fieldNamed(() =>
        interfaceFromJson(
          parseKataJsonText(
            '{"name":"e","IPAddresses":[{"address":"10.0.0.1"},{"family":"x"}],"IPAddresses":[{"address":"10.0.0.2"}]}',
            'interface',
          ),
        ),
      ),
    ).toBe(
      'interface.IPAddresses[1].family (the "IPAddresses" at position 12 (line 1 column 13), which a later "IPAddresses" overwrites)',
    );
  });

  it('says bad JSON with a key given twice as JSON.parse says it of the text as written: its positions, its words', () => {
    // The earlier duplicate is renamed before parsing: the refusal must not count or quote that name.
    for (const text of ['{"name":"a","name":"b",}', '{"a":tru,"a":2}', '{"name":"a","name":"b"} x']) {
      let refusal: unknown;
      try {
        parseKataJsonText(text, 'interface');
      } catch (error) {
        refusal = error;
      }
      let expected = '';
      try {
        JSON.parse(text);
      } catch (error) {
        expected = (error as Error).message;
      }
      expect(refusal).toBeInstanceOf(InvalidInputError);
      expect((refusal as InvalidInputError).hint, text).toBe(expected);
    }
  });

  it('says input that starts with a byte order mark does so, in words a terminal shows', () => {
    let refusal: unknown;
    try {
      parseKataJsonText('\uFEFF{"name":"eth0"}', 'interface');
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(InvalidInputError);
    expect((refusal as InvalidInputError).hint).toBe(
      'it starts with a byte order mark (U+FEFF), which JSON does not allow: save it without one',
    );
  });

  it('refuses input over the size bound and bad JSON, naming the field', () => {
    expect(fieldOf(() => parseKataJsonText(' '.repeat(MAX_KATA_JSON_BYTES + 1), 'interface'))).toMatch(
      /^interface: .*at most/,
    );
    expect(fieldOf(() => parseKataJsonText('{"name":', 'interface'))).toMatch(/^interface: .*valid JSON/);
  });
});

describe('kernel name rules', () => {
  it.each([
    ['', 'empty'],
    ['a-name-of-16byte', '16 bytes'],
    ['tap%d', '%'],
    ['eth/0', '/'],
    ['eth:0', ':'],
    ['eth 0', 'whitespace'],
    ['\u0000eth0', 'control'],
    ['eth\t0', 'whitespace'],
    ['.', 'path'],
    ['..', 'path'],
    ['éééééééé', '16 bytes'],
  ])('refuses %j (%s)', (name, reason) => {
    expect(linkNameProblem(name)).toContain(reason);
    expect(() => checkLinkName('interface.name', name)).toThrow(InvalidInputError);
  });

  it('accepts ordinary names up to 15 bytes', () => {
    for (const name of ['eth0', 'a-name-of-15byt', 'net_7.v@x', 'ééééééé'])
      expect(linkNameProblem(name), name).toBeUndefined();
  });

  it("knows vcnet's own devices", () => {
    expect(isVcnetDevice({ name: 'tap0_kata' })).toBe(true);
    expect(isVcnetDevice({ name: 'ifb12_kata' })).toBe(true);
    expect(isVcnetDevice({ name: 'x', group: VCNET_LINK_GROUP })).toBe(true);
    expect(isVcnetDevice({ name: 'tap0', group: 0 })).toBe(false);
  });
});

describe('add-iface request', () => {
  it("takes Kata's own example: name is the guest NIC, type tap makes tap<N>_kata (no pod link needed)", () => {
    const request = resolve(kataExample);
    expect(request.requestedType).toBe('tap');
    expect(request.guestName).toBe('eth1');
    expect(request.podDevice).toBe('');
    expect(request.info.link.name).toBe('eth1');
    expect(request.info.link.address).toBe('02:42:ac:11:00:09');
    expect(request.info.addresses.map((entry) => `${entry.address}/${entry.prefixLength}`)).toEqual(['172.17.0.9/16']);
  });

  it("gives the guest NIC the pod link's addresses unless IPAddresses names others (docs/compatibility.md)", () => {
    const podAddress = { index: 7, family: 2, address: '10.77.0.2', prefixLength: 24, scope: 0, flags: 0 };
    const addressed = pod.map((entry) => (entry.link.name === 'eth7' ? { ...entry, addresses: [podAddress] } : entry));
    const guestAddresses = (json: unknown) =>
      resolveAddInterfaceRequest(interfaceFromJson(json), addressed, existing).info.addresses.map(
        (entry) => `${entry.address}/${entry.prefixLength}`,
      );
    // Kata would send these as given, with no address; vcnet keeps what CNI gave the pod link.
    expect(guestAddresses({ name: 'eth7' })).toEqual(['10.77.0.2/24']);
    expect(guestAddresses({ name: 'eth7', IPAddresses: [] })).toEqual(['10.77.0.2/24']);
    // Other addresses are taken for the guest NIC as given; another MAC is refused.
    expect(guestAddresses({ name: 'eth7', IPAddresses: [{ address: '10.99.0.2', mask: '24' }] })).toEqual([
      '10.99.0.2/24',
    ]);
    expect(
      fieldOf(() =>
        resolveAddInterfaceRequest(
          interfaceFromJson({ name: 'eth7', hwAddr: '02:00:00:00:00:99' }),
          addressed,
          existing,
        ),
      ),
    ).toMatch(/^interface\.hwAddr: /);
  });

  it('uses name as the pod link when device is absent (type inferred)', () => {
    const request = resolve({ name: 'eth7' });
    expect(request.podDevice).toBe('eth7');
    expect(request.guestName).toBe('eth7');
    expect(request.requestedType).toBeUndefined();
  });

  it('keeps the seed-era form: device is the pod link, name the guest NIC', () => {
    const request = resolve(seedExample);
    expect([request.podDevice, request.guestName, request.info.link.mtu]).toEqual(['eth7', 'net7', 1400]);
  });

  it("takes Kata users' form with the host side's name in device: name is the pod link, device passed over", () => {
    // As kata-runtime users wrote it (device "tap1" or "veth-test" on the host, name the link in the
    // pod): Kata reads only name (generateNetInfo), so the request works there.
    const usersExample = {
      device: 'veth-test',
      name: 'eth7',
      IPAddresses: [{ address: '10.77.0.2', mask: '16' }],
      hwAddr: '02:42:ac:11:00:07',
      mtu: 1500,
    };
    const request = resolve(usersExample);
    expect([request.podDevice, request.guestName, request.deviceIgnored]).toEqual(['eth7', 'eth7', 'veth-test']);
    // A device that names a pod link is still the pod link (the seed-era form), with nothing passed over.
    expect(resolve(seedExample).deviceIgnored).toBeUndefined();
    // Neither names a pod link: refused naming device, as before.
    expect(fieldOf(() => resolve({ device: 'veth-test', name: 'nosuch' }))).toMatch(/^interface\.device: /);
  });

  it('takes the 1.x capitalised form (MAC in upper case matches the link)', () => {
    const request = resolve(capitalisedExample);
    expect([request.podDevice, request.guestName, request.requestedType]).toEqual(['eth7', 'eth7', 'virtual']);
  });

  it('checks a requested type against the link kind, naming both', () => {
    let error: unknown;
    try {
      resolve({ name: 'eth7', type: 'physical' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(IncorrectLinkTypeError);
    // Kata's order (getLinkByName): the link's own type first, then the type asked for.
    expect((error as Error).message).toMatch(/^Incorrect link type veth, expecting physical: /);
    // What the request may say instead: "veth" is taken for "virtual", and the message names it.
    expect((error as Error).message).toContain('(accepted: "virtual" (or "veth"), the endpoint type of eth7');
    expect(() => resolve({ name: 'eth7', type: 'vett' })).toThrow(
      /accepted: .*\(and veth or device, read as virtual\)/,
    );
    expect(fieldOf(() => resolve({ name: 'eth7', type: 'macvtap' }))).toMatch(/^interface\.type: .*expecting macvtap/);
    expect(fieldOf(() => resolve({ name: 'mv0', type: 'veth' }))).toMatch(/macvlan link/);
    expect(resolve({ name: 'mv0', type: 'macvlan' }).requestedType).toBe('macvlan');
  });

  it('says which vhost-user sockets it looked for when "vhost-user" is asked of a link without one', () => {
    const podAddress = { index: 7, family: 2, address: '10.77.0.2', prefixLength: 24, scope: 0, flags: 0 };
    const addressed = pod.map((entry) => (entry.link.name === 'eth7' ? { ...entry, addresses: [podAddress] } : entry));
    const hintOf = (interfaces: typeof pod, options: { vhostUserStorePath?: string }) => {
      try {
        resolveAddInterfaceRequest(
          interfaceFromJson({ name: 'eth7', type: 'vhost-user' }),
          interfaces,
          existing,
          options,
        );
      } catch (error) {
        expect(error).toBeInstanceOf(IncorrectLinkTypeError);
        return (error as IncorrectLinkTypeError).hint;
      }
      throw new Error('eth7 was taken as vhost-user');
    };
    expect(hintOf(addressed, { vhostUserStorePath: '/run/s16-no-store' })).toContain(
      '/run/s16-no-store/vhostuser_10.77.0.2/vhu.sock',
    );
    expect(hintOf(addressed, {})).toContain('/tmp/vhostuser_10.77.0.2/vhu.sock');
    expect(hintOf(pod, {})).toMatch(
      /looked for by the guest NIC's addresses \(IPAddresses, else the link's\), and eth7 has none/,
    );
    // Another type asked of the same link says nothing about sockets.
    expect(() => resolve({ name: 'eth7', type: 'physical' })).toThrow(/^(?![\s\S]*vhu\.sock)/);
  });

  it('takes type "device" (a link with no netlink kind, such as an mlx5 sub-function) as a veth endpoint, as Kata does', () => {
    // Kata 6436922f5b (network_linux.go addSingleEndpoint): "device" makes a veth endpoint.
    const kindless = [
      ...pod,
      info({ link: link({ index: 11, name: 'sf0', kind: undefined, address: '02:42:ac:11:00:0b' }) }),
    ];
    const request = resolveAddInterfaceRequest(interfaceFromJson({ name: 'sf0', type: 'device' }), kindless, existing);
    expect([request.podDevice, request.requestedType]).toEqual(['sf0', 'virtual']);
    expect(resolve({ name: 'eth7', type: 'device' }).requestedType).toBe('virtual');
    // Still checked against the link: a macvlan is no "device".
    expect(fieldOf(() => resolve({ name: 'mv0', type: 'device' }))).toMatch(
      /^interface\.type: Incorrect link type macvlan, expecting device/,
    );
  });

  it('makes a link with a vhost-user socket a vhost-user endpoint whatever type says, as Kata looks for the socket first', () => {
    const store = mkdtempSync(join(tmpdir(), 'vcnet-vhu-'));
    try {
      mkdirSync(join(store, 'vhostuser_10.77.0.2'));
      writeFileSync(join(store, 'vhostuser_10.77.0.2', 'vhu.sock'), '');
      const podAddress = { index: 7, family: 2, address: '10.77.0.2', prefixLength: 24, scope: 0, flags: 0 };
      const addressed = pod.map((entry) =>
        entry.link.name === 'eth7' ? { ...entry, addresses: [podAddress] } : entry,
      );
      for (const type of ['veth', 'virtual', 'device', 'macvlan', 'vhost-user']) {
        const request = resolveAddInterfaceRequest(interfaceFromJson({ name: 'eth7', type }), addressed, existing, {
          vhostUserStorePath: store,
        });
        expect([type, request.requestedType, request.typeOverridden]).toEqual([
          type,
          'vhost-user',
          type === 'vhost-user' ? undefined : type,
        ]);
      }
    } finally {
      rmSync(store, { recursive: true, force: true });
    }
  });

  it('refuses a loopback address in IPAddresses, which vcnet would otherwise drop silently', () => {
    for (const [index, IPAddresses] of [
      [0, [{ address: '127.0.0.5', mask: '8' }]],
      [
        1,
        [
          { address: '10.99.0.2', mask: '24' },
          { family: 1, address: '::1', mask: '128' },
        ],
      ],
    ] as const) {
      expect(fieldOf(() => resolve({ name: 'eth7', IPAddresses }))).toMatch(
        new RegExp(`^interface\\.IPAddresses\\[${index}\\]\\.address: .*loopback`),
      );
    }
  });

  it.each<[string, unknown, RegExp]>([
    ['no name or device', { mtu: 1500 }, /^interface\.name/],
    ['tap%d as the name', { ...kataExample, name: 'tap%d' }, /^interface\.name: .*%/],
    ['a NUL in the guest name', { device: 'eth7', name: '\u0000eth' }, /^interface\.name/],
    ['a 16-byte name', { name: 'a-name-of-16byte' }, /^interface\.name/],
    ['a / in the device', { device: 'eth/7' }, /^interface\.device/],
    ["vcnet's own tap", { name: 'tap0_kata' }, /^interface\.name: .*not one of the devices vcnet made/],
    ["a link in vcnet's group", { name: 'grouped' }, /^interface\.name: .*not one of the devices vcnet made/],
    ['a taken guest name', { device: 'eth7', name: 'eth0' }, /^interface\.name: .*no other interface/],
    [
      'a taken guest name and another MAC',
      { name: 'eth0', hwAddr: '02:00:00:00:00:99' },
      /^interface\.name: .*no other/,
    ],
    // Free links only: eth0 is the sandbox's already, tap0_kata and grouped are vcnet's own.
    ['a missing link', { name: 'nosuch0' }, /^interface\.name: .*"nosuch0".*namespace \(eth7, mv0\)/],
    ['an unknown type', { name: 'eth7', type: 'bridge' }, /^interface\.type: .*"bridge"/],
    ['another MAC than the link has', { name: 'eth7', hwAddr: '02:00:00:00:00:99' }, /^interface\.hwAddr/],
    ['a tap without a MAC', { name: 'eth5', type: 'tap' }, /^interface\.hwAddr/],
    ['a tap with the all-zero MAC', { ...kataExample, hwAddr: '00:00:00:00:00:00' }, /^interface\.hwAddr: .*unicast/],
    ['a tap with a multicast MAC', { ...kataExample, hwAddr: '01:00:5e:00:00:01' }, /^interface\.hwAddr: .*unicast/],
    [
      'an address that is neither v4 nor v6',
      { ...kataExample, IPAddresses: [{ address: '10.0.0.300', mask: '24' }] },
      /^interface\.IPAddresses\[0\]\.address: .*IPv4 or IPv6/,
    ],
  ])('refuses %s, naming the field', (_what, json, pattern) => {
    expect(fieldOf(() => resolve(json))).toMatch(pattern);
  });

  it('says an interface the sandbox has from the same link is already added (an add-iface run again), not bad input', () => {
    const sandbox = { id: 'sb', stateDirectory: '/tmp/s18/state', namespacePath: '/var/run/netns/pod' };
    const again = (json: unknown, endpoints: readonly ExistingEndpoint[] = existing) => {
      try {
        resolveAddInterfaceRequest(interfaceFromJson(json), pod, endpoints, { sandbox });
      } catch (error) {
        return error as InterfaceAlreadyAddedError;
      }
      throw new Error('expected a refusal');
    };
    for (const json of [{ name: 'eth0' }, { name: 'eth0', device: 'eth0', hwAddr: '02:42:AC:11:00:02' }]) {
      const error = again(json);
      expect(error).toBeInstanceOf(InterfaceAlreadyAddedError);
      expect(error).not.toBeInstanceOf(InvalidInputError);
      expect(error.code).toBe('VCNET_INTERFACE_ALREADY_ADDED');
      expect(error.message).toBe('interface eth0 is already added to sandbox sb');
      expect(error.hint).toContain('`vcnet configure-guest --sandbox sb --state-dir /tmp/s18/state`');
      expect(error.hint).toContain('`vcnet del-iface sb FILE --state-dir /tmp/s18/state`');
    }
    // Half-added (its add-iface killed during the attach): gc undoes that interface.
    const half = again({ name: 'eth0' }, [{ ...existing[0]!, plumbing: { model: 'pending' } }]);
    expect(half.message).toContain('half-added');
    expect(half.hint).toContain('`vcnet gc --netns /var/run/netns/pod --state-dir /tmp/s18/state`');
    // Plugged by an add-iface that gave the lock back while the guest configures it.
    const waitedFor = (running: boolean, by: 'add-iface' | 'watch' = 'add-iface', guessed?: string) => {
      try {
        resolveAddInterfaceRequest(interfaceFromJson({ name: 'eth0' }), pod, existing, {
          sandbox: { ...sandbox, guestPending: [{ name: 'eth0', running, by, ...(guessed ? { guessed } : {}) }] },
        });
      } catch (error) {
        return error as InterfaceAlreadyAddedError;
      }
      throw new Error('expected a refusal');
    };
    const waiting = waitedFor(true);
    expect(waiting.code).toBe('VCNET_INTERFACE_ALREADY_ADDED');
    expect(waiting.message).toBe(
      'interface eth0 is already added to sandbox sb: the add-iface that added it is still waiting for the guest to configure it',
    );
    expect(waiting.hint).toContain('wait for that add-iface to finish');
    const stopped = waitedFor(false);
    expect(stopped.message).toBe(
      'interface eth0 is already added to sandbox sb, its NIC plugged: the add-iface that added it was stopped while it waited for the guest to configure it',
    );
    expect(stopped.hint).toContain('`vcnet configure-guest --sandbox sb --state-dir /tmp/s18/state`');
    expect(stopped.hint).toContain('`vcnet del-iface sb FILE --state-dir /tmp/s18/state`');
    // Plugged by a `vcnet watch` reacting to a new pod link: the message names the watch, not an add-iface.
    expect(waitedFor(false, 'watch').message).toBe(
      'interface eth0 is already added to sandbox sb, its NIC plugged: the `vcnet watch` that added it was stopped while it waited for the guest to configure it',
    );
    expect(waitedFor(true, 'watch').hint).toContain('wait for that `vcnet watch` to finish');
    // Told by time (that add-iface's PID namespace out of sight): said to be a guess, as vcnet list says it.
    const guess =
      'guessed: it runs in a PID namespace not seen from here, so it is taken as waiting until its longest wait ends, at 2026-12-05T08:13:30Z';
    expect(waitedFor(true, 'add-iface', guess).message).toBe(
      `interface eth0 is already added to sandbox sb: the add-iface that added it is still waiting for the guest to configure it (${guess})`,
    );
    expect(waitedFor(false, 'add-iface', 'guessed: past').message).toMatch(
      /was stopped while it waited for the guest to configure it \(guessed: past\)$/,
    );
  });
});
