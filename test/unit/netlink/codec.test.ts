/**
 * The codec on bytes the kernel really sent (test/fixtures/netlink/kernel-dumps.json, recorded by
 * scripts/capture-netlink-fixtures.ts), on its own encodings, and on garbage.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AddressAttribute, decodeAddress, encodeAddress } from '../../../src/netlink/codec/address.js';
import { bytesToIp, bytesToMac, ipToBytes, macToBytes, parseCidr } from '../../../src/netlink/codec/address-format.js';
import { AddressFamily, MessageType, namesByValue } from '../../../src/netlink/codec/constants.js';
import { IpvlanMode } from '../../../src/netlink/codec/link/ipvlan.js';
import { MacvlanMode } from '../../../src/netlink/codec/link/macvlan.js';
import { decodeLink, encodeNewLink } from '../../../src/netlink/codec/link.js';
import {
  decodeNeighbour,
  encodeNeighbour,
  NeighbourFlag,
  NeighbourState,
} from '../../../src/netlink/codec/neighbour.js';
import { Attributes, decodeError, MalformedMessageError, splitMessages } from '../../../src/netlink/codec/reader.js';
import { decodeRoute, encodeRoute } from '../../../src/netlink/codec/route.js';
import { MATCH_ALL_U32_KEYS } from '../../../src/netlink/codec/tc/filter/u32.js';
import { decodeFilter, encodeFilter } from '../../../src/netlink/codec/tc/filter.js';
import { formatHandle, parseHandle, TC_H_INGRESS } from '../../../src/netlink/codec/tc/message.js';
import { decodeClass, encodeHtbClass } from '../../../src/netlink/codec/tc/qdisc/htb.js';
import { decodeQdisc, encodeQdisc } from '../../../src/netlink/codec/tc/qdisc.js';
import { MessageWriter } from '../../../src/netlink/codec/writer.js';
import { errnoName } from '../../../src/netlink/errors.js';
import fixture from '../../fixtures/netlink/kernel-dumps.json' with { type: 'json' };

const recorded = (name: keyof typeof fixture) =>
  splitMessages(Buffer.from((fixture[name] as string[]).join(''), 'hex'));

function roundTrip(encode: (writer: MessageWriter) => void) {
  const writer = new MessageWriter();
  writer.beginMessage(0, 0, 1);
  encode(writer);
  writer.endMessage();
  const [message] = splitMessages(writer.finish());
  return message!;
}

describe('recorded kernel dumps', () => {
  it('decodes links: veth pair, macvtap with mode, persistent tap', () => {
    const links = recorded('links')
      .filter((m) => m.type === MessageType.NEWLINK)
      .map(decodeLink);
    const veth = links.find((link) => link.name === 'veth0')!;
    expect(veth).toMatchObject({ kind: 'veth', mtu: 1400, address: '02:11:22:33:44:55', index: fixture.indexes.veth });
    expect(veth.parentIndex).toBe(fixture.indexes.peer);
    expect(links.find((link) => link.name === 'mvt0')).toMatchObject({
      kind: 'macvtap',
      macvlanMode: 'bridge',
      parentIndex: fixture.indexes.peer,
    });
    expect(links.find((link) => link.name === 'tap0_kata')?.tun).toMatchObject({
      type: 'tap',
      persist: true,
      vnetHeader: true,
    });
    expect(links.find((link) => link.name === 'lo')?.kind).toBeUndefined();
  });

  it('decodes v4 and v6 addresses', () => {
    const addresses = recorded('addresses')
      .filter((m) => m.type === MessageType.NEWADDR)
      .map(decodeAddress);
    expect(addresses.find((a) => a.address === '10.99.0.2')).toMatchObject({
      prefixLength: 24,
      family: AddressFamily.INET,
      index: fixture.indexes.veth,
    });
    expect(addresses.find((a) => a.address === 'fd00:99::2')).toMatchObject({
      prefixLength: 64,
      family: AddressFamily.INET6,
    });
    // The kernel sends IFA_CACHEINFO with every address; a permanent one's lifetimes are "forever".
    for (const address of addresses) {
      expect([address.validLifetime, address.preferredLifetime], address.address).toEqual([undefined, undefined]);
    }
  });

  it('decodes routes with gateway and MTU metric', () => {
    const routes = recorded('routes')
      .filter((m) => m.type === MessageType.NEWROUTE)
      .map(decodeRoute);
    expect(routes.find((r) => r.destination === '10.98.0.0')).toMatchObject({
      destinationLength: 16,
      gateway: '10.99.0.1',
      mtu: 1400,
    });
    expect(routes.find((r) => r.destination === 'fd00:98::')).toMatchObject({
      destinationLength: 48,
      gateway: 'fd00:99::1',
      mtu: 1380,
    });
  });

  it('decodes a permanent neighbour', () => {
    const neighbours = recorded('neighbours')
      .filter((m) => m.type === MessageType.NEWNEIGH)
      .map(decodeNeighbour);
    expect(neighbours.find((n) => n.destination === '10.99.0.9')).toMatchObject({
      linkLayerAddress: '02:00:00:00:00:09',
      state: NeighbourState.PERMANENT,
    });
  });

  it('decodes ingress and htb qdiscs, an htb class and a u32 mirred filter', () => {
    const qdiscs = recorded('qdiscs')
      .filter((m) => m.type === MessageType.NEWQDISC)
      .map(decodeQdisc);
    expect(qdiscs.find((q) => q.index === fixture.indexes.veth && q.kind === 'ingress')?.parent).toBe(TC_H_INGRESS);
    expect(qdiscs.find((q) => q.kind === 'htb')?.options).toEqual({ kind: 'htb', defaultClass: 2 });
    const [htbClass] = recorded('classes')
      .filter((m) => m.type === MessageType.NEWTCLASS)
      .map(decodeClass);
    expect(htbClass).toMatchObject({ handle: parseHandle('1:1'), rateBitsPerSecond: 8_000_000 });
    const filters = recorded('filters')
      .filter((m) => m.type === MessageType.NEWTFILTER)
      .map(decodeFilter);
    const rule = filters.find((f) => f.options.kind === 'u32' && 'keys' in f.options && f.options.keys.length === 1);
    expect(rule).toMatchObject({ priority: 49152, protocol: 3 });
    expect(rule?.options).toMatchObject({
      actions: [{ kind: 'mirred', mode: 'redirect', targetIndex: fixture.indexes.tap }],
    });
  });

  it('agrees with what the capture recorded about an extended-ack refusal', () => {
    expect(fixture.refusal.errno).toBe('EOPNOTSUPP');
    expect(fixture.refusal.kernelMessage).toBe('Unknown device type');
  });
});

describe('encode then decode', () => {
  it('links with kind data', () => {
    const message = roundTrip((w) =>
      encodeNewLink(w, { name: 'mvt0', mtu: 1500, parentIndex: 7, data: { kind: 'macvtap', mode: 'passthru' } }),
    );
    expect(decodeLink(message)).toMatchObject({
      name: 'mvt0',
      mtu: 1500,
      parentIndex: 7,
      kind: 'macvtap',
      macvlanMode: 'passthru',
    });
  });

  it('addresses, with a peer', () => {
    const message = roundTrip((w) =>
      encodeAddress(w, { index: 3, address: '10.0.0.1', prefixLength: 32, peer: '10.0.0.2' }),
    );
    expect(decodeAddress(message)).toMatchObject({ index: 3, address: '10.0.0.1', peer: '10.0.0.2', prefixLength: 32 });
  });

  it('addresses with lifetimes: IFA_CACHEINFO with the preferred lifetime first, "forever" when one is left out', () => {
    const message = roundTrip((w) =>
      encodeAddress(w, { index: 3, address: 'fd00::2', prefixLength: 64, validLifetime: 600, preferredLifetime: 0 }),
    );
    expect(decodeAddress(message)).toMatchObject({ validLifetime: 600, preferredLifetime: 0 });
    const cacheinfo = new Attributes(message.payload, 8).raw(AddressAttribute.CACHEINFO);
    expect(cacheinfo?.toString('hex')).toBe('0000000058020000' + '0000000000000000');
    const validOnly = decodeAddress(
      roundTrip((w) => encodeAddress(w, { index: 3, address: '10.0.0.1', prefixLength: 24, validLifetime: 30 })),
    );
    expect([validOnly.validLifetime, validOnly.preferredLifetime]).toEqual([30, undefined]);
    const metric = decodeAddress(
      roundTrip((w) => encodeAddress(w, { index: 3, address: '10.0.0.1', prefixLength: 24, routePriority: 77 })),
    );
    expect(metric.routePriority).toBe(77);
    const permanent = roundTrip((w) => encodeAddress(w, { index: 3, address: '10.0.0.1', prefixLength: 24 }));
    expect(new Attributes(permanent.payload, 8).raw(AddressAttribute.CACHEINFO)).toBeUndefined();
  });

  it('neighbours with a protocol (NDA_PROTOCOL) and the router flag', () => {
    const message = roundTrip((w) =>
      encodeNeighbour(w, {
        index: 3,
        destination: 'fd00::9',
        linkLayerAddress: '02:00:00:00:00:19',
        flags: NeighbourFlag.ROUTER,
        protocol: 4,
      }),
    );
    expect(decodeNeighbour(message)).toMatchObject({
      destination: 'fd00::9',
      flags: NeighbourFlag.ROUTER,
      protocol: 4,
    });
    const plain = decodeNeighbour(roundTrip((w) => encodeNeighbour(w, { index: 3, destination: '10.0.0.9' })));
    expect(plain.protocol).toBeUndefined();
  });

  it('routes with MTU, default and v6', () => {
    const route = decodeRoute(roundTrip((w) => encodeRoute(w, { gateway: 'fe80::1', outputIndex: 2, mtu: 9000 })));
    expect(route).toMatchObject({
      family: AddressFamily.INET6,
      destinationLength: 0,
      gateway: 'fe80::1',
      outputIndex: 2,
      mtu: 9000,
    });
    expect(route.destination).toBeUndefined();
  });

  it('qdiscs, classes and filters', () => {
    expect(
      decodeQdisc(
        roundTrip((w) =>
          encodeQdisc(w, {
            index: 1,
            handle: parseHandle('1:'),
            parent: 0xffffffff,
            options: { kind: 'htb', defaultClass: 2 },
          }),
        ),
      ).options,
    ).toEqual({
      kind: 'htb',
      defaultClass: 2,
    });
    const priorityMap = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    expect(
      decodeQdisc(
        roundTrip((w) =>
          encodeQdisc(w, {
            index: 1,
            handle: parseHandle('2:'),
            parent: 0xffffffff,
            options: { kind: 'prio', bands: 3, priorityMap },
          }),
        ),
      ).options,
    ).toEqual({
      kind: 'prio',
      bands: 3,
      priorityMap,
    });
    const big = decodeClass(
      roundTrip((w) =>
        encodeHtbClass(w, { index: 1, handle: 0x10001, parent: 0x10000, rateBitsPerSecond: 100_000_000_000 }),
      ),
    );
    expect(big.rateBitsPerSecond).toBe(100_000_000_000);
    const filter = decodeFilter(
      roundTrip((w) =>
        encodeFilter(w, {
          index: 4,
          parent: TC_H_INGRESS,
          priority: 1,
          options: {
            kind: 'u32',
            keys: MATCH_ALL_U32_KEYS,
            actions: [{ kind: 'mirred', direction: 'ingress', mode: 'mirror', targetIndex: 9 }],
          },
        }),
      ),
    );
    expect(filter.options).toMatchObject({
      kind: 'u32',
      terminal: true,
      actions: [{ direction: 'ingress', mode: 'mirror', targetIndex: 9 }],
    });
  });

  it('handles and addresses in text form', () => {
    expect(formatHandle(parseHandle('ffff:'))).toBe('ffff:');
    expect(formatHandle(parseHandle('1:2'))).toBe('1:2');
    expect(() => parseHandle('x')).toThrow(/major:minor/);
    expect(bytesToMac(macToBytes('02:AB:cd:00:01:ff'))).toBe('02:ab:cd:00:01:ff');
    expect(() => macToBytes('02:ab')).toThrow(/MAC/);
    expect(parseCidr('fd00::1/64')).toEqual({ address: 'fd00::1', prefixLength: 64, family: AddressFamily.INET6 });
    expect(() => parseCidr('10.0.0.1/33')).toThrow(/IP/);
  });
});

describe('properties', () => {
  it('IPv6 text -> bytes -> text gives the canonical form (as WHATWG URL normalises it)', () => {
    fc.assert(
      fc.property(fc.ipV6(), (address) => {
        const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
        const ours = bytesToIp(ipToBytes(address));
        // URL writes embedded IPv4 tails in hex; both must denote the same bytes.
        expect(ipToBytes(ours).equals(ipToBytes(canonical))).toBe(true);
        expect(ours).not.toMatch(/:::/);
      }),
    );
  });

  it('IPv4 text round trips', () => {
    fc.assert(
      fc.property(fc.ipV4(), (address) => {
        expect(bytesToIp(ipToBytes(address))).toBe(address);
      }),
    );
  });

  it('the attribute and message parsers reject garbage with MalformedMessageError, never crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const data = Buffer.from(bytes);
        for (const parse of [() => new Attributes(data), () => splitMessages(data)]) {
          try {
            parse();
          } catch (error) {
            expect(error).toBeInstanceOf(MalformedMessageError);
          }
        }
        try {
          for (const message of splitMessages(data)) {
            for (const decode of [decodeLink, decodeAddress, decodeRoute, decodeNeighbour, decodeQdisc, decodeFilter]) {
              try {
                decode(message);
              } catch (error) {
                expect(error).toBeInstanceOf(MalformedMessageError);
              }
            }
          }
        } catch (error) {
          expect(error).toBeInstanceOf(MalformedMessageError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects truncated recorded messages', () => {
    const hex = (fixture.links as string[])[1]!;
    const bytes = Buffer.from(hex, 'hex');
    expect(() => splitMessages(bytes.subarray(0, bytes.length - 8))).toThrow(MalformedMessageError);
    const short = Buffer.from(bytes);
    short.writeUInt32LE(20, 0);
    expect(() => decodeLink(splitMessages(short)[0]!)).toThrow(MalformedMessageError);
  });

  it('reads an error ack with extended-ack text', () => {
    const writer = new MessageWriter();
    writer.beginMessage(MessageType.ERROR, 0x100 | 0x200, 7);
    const body = writer.header(4 + 16);
    body.writeInt32LE(-95, 0);
    body.writeUInt32LE(40, 4);
    body.writeUInt16LE(MessageType.NEWLINK, 8);
    body.writeUInt32LE(7, 12);
    writer.string(1, 'Unknown device type');
    writer.endMessage();
    const decoded = decodeError(splitMessages(writer.finish())[0]!);
    expect(decoded).toMatchObject({
      errno: 95,
      kernelMessage: 'Unknown device type',
      requestType: MessageType.NEWLINK,
    });
  });
});

describe('MessageWriter growth', () => {
  // Each kind of attribute, written at every offset around the end of a small buffer, must give the
  // same bytes as a writer that never grows (a u32 that crossed the end once went to the old buffer:
  // a RangeError in the middle of a detach's restore batch).
  const writes: Array<[string, (writer: MessageWriter) => void]> = [
    ['u8', (w) => w.u8(1, 0xab)],
    ['u16', (w) => w.u16(2, 0xabcd)],
    ['u32', (w) => w.u32(3, 0xdeadbeef)],
    ['s32', (w) => w.s32(4, -2)],
    ['u64', (w) => w.u64(5, 0x0102030405060708n)],
    ['string', (w) => w.string(6, 'tap0_kata')],
    ['bytes', (w) => w.bytes(7, Uint8Array.of(1, 2, 3, 4, 5))],
    ['struct', (w) => w.struct(8, 12).writeUInt32LE(0x11223344, 8)],
    ['nested', (w) => w.beginNested(9).u32(10, 7).endNested()],
    [
      'route',
      (w) => encodeRoute(w, { destination: '10.61.1.0', destinationLength: 24, gateway: '10.60.0.1', outputIndex: 2 }),
    ],
  ];
  const batch = (initialSize: number, filler: number, write: (writer: MessageWriter) => void) => {
    const writer = new MessageWriter(initialSize);
    writer.beginMessage(0, 0, 1);
    writer.bytes(1, new Uint8Array(filler).fill(0x5a));
    write(writer);
    writer.endMessage();
    return Buffer.from(writer.finish());
  };
  it.each(writes)('%s across the end of the buffer', (_name, write) => {
    for (let filler = 0; filler <= 40; filler++) {
      expect(batch(32, filler, write), `filler of ${filler} bytes`).toEqual(batch(4096, filler, write));
    }
  });
});

describe('constant names by value', () => {
  it('names every ipvlan and macvlan mode and an errno; a number no table has gets no name', () => {
    expect([...namesByValue(IpvlanMode)]).toEqual([
      [0, 'l2'],
      [1, 'l3'],
      [2, 'l3s'],
    ]);
    expect(namesByValue(MacvlanMode).get(MacvlanMode.passthru)).toBe('passthru');
    expect(namesByValue(MacvlanMode).get(0x1234)).toBeUndefined();
    expect(errnoName(2)).toBe('ENOENT');
    expect(errnoName(100_000)).toBe('E100000');
  });
});
