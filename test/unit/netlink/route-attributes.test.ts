/**
 * Route metrics, realms and multipath next hops, and proxy neighbours: decoded from what the kernel
 * sent for objects iproute2 made (test/fixtures/netlink/route-attributes.json, recorded by
 * scripts/capture-route-attribute-fixtures.ts), encoded to the exact bytes the kernel reads, and
 * round-tripped.
 */
import { describe, expect, it } from 'vitest';
import { AddressFamily, MessageType } from '../../../src/netlink/codec/constants.js';
import { decodeNeighbour, encodeGetNeighbour, NeighbourFlag } from '../../../src/netlink/codec/neighbour.js';
import { Attributes, MalformedMessageError, splitMessages } from '../../../src/netlink/codec/reader.js';
import {
  decodeRoute,
  encodeRoute,
  type Route,
  RouteFlag,
  RoutePreference,
  type RouteSpec,
} from '../../../src/netlink/codec/route.js';
import { RouteAttribute, RouteMetric } from '../../../src/netlink/codec/route-attributes.js';
import { MessageWriter } from '../../../src/netlink/codec/writer.js';
import fixture from '../../fixtures/netlink/route-attributes.json' with { type: 'json' };

const recorded = (name: 'routes' | 'proxyNeighbours') => splitMessages(Buffer.from(fixture[name].join(''), 'hex'));

const routes = recorded('routes')
  .filter((message) => message.type === MessageType.NEWROUTE)
  .map(decodeRoute);
const routeTo = (destination: string): Route => {
  const route = routes.find((candidate) => candidate.destination === destination);
  if (!route) throw new Error(`no recorded route to ${destination}`);
  return route;
};

function encoded(spec: RouteSpec, forDelete = false) {
  const writer = new MessageWriter();
  writer.beginMessage(MessageType.NEWROUTE, 0, 1);
  encodeRoute(writer, spec, forDelete);
  writer.endMessage();
  return splitMessages(writer.finish())[0]!;
}

/** What a decoded route asks the kernel for, as a request (the route's own fields, no state). */
function specOf(route: Route): RouteSpec {
  const { sourceLength: _s, tos: _t, ...spec } = route;
  return spec;
}

describe('recorded kernel dumps', () => {
  it('decodes every metric by RTAX_* number: u32 values, the congestion control by name, the locks as bits', () => {
    const route = routeTo('10.50.0.0');
    expect(route.metrics).toEqual({
      [RouteMetric.LOCK]: (1 << RouteMetric.MTU) | (1 << RouteMetric.RTO_MIN),
      [RouteMetric.MTU]: 1400,
      [RouteMetric.RTT]: 300,
      [RouteMetric.ADVMSS]: 1300,
      [RouteMetric.INITCWND]: 20,
      [RouteMetric.FEATURES]: 1,
      [RouteMetric.RTO_MIN]: 50,
      [RouteMetric.CC_ALGO]: 'cubic',
    });
    expect(route.mtu).toBe(1400);
  });

  it('decodes a realm (RTA_FLOW: from << 16 | to)', () => {
    expect(routeTo('10.51.0.0').realm).toBe((3 << 16) | 7);
    expect(routeTo('10.50.0.0').realm).toBeUndefined();
  });

  it('decodes IPv4 next hops: gateway, link, weight, flags and realm each, and no route-level gateway or link', () => {
    const route = routeTo('10.52.0.0');
    expect(route.nextHops).toEqual([
      { gateway: '10.99.0.1', outputIndex: fixture.indexes.veth0, weight: 1, flags: 0, realm: 4 },
      { gateway: '10.98.0.9', outputIndex: fixture.indexes.veth1, weight: 3, flags: RouteFlag.ONLINK },
    ]);
    expect(route.gateway).toBeUndefined();
    expect(route.outputIndex).toBeUndefined();
  });

  it('decodes IPv6 next hops (the kernel merges the sibling routes into one message) and their metrics', () => {
    const route = routeTo('fd00:52::');
    expect(route.family).toBe(AddressFamily.INET6);
    expect(route.nextHops).toEqual([
      { gateway: 'fd00:99::1', outputIndex: fixture.indexes.veth0, weight: 1, flags: 0 },
      { gateway: 'fd00:99::5', outputIndex: fixture.indexes.veth0, weight: 2, flags: 0 },
    ]);
    expect(route.metrics).toEqual({ [RouteMetric.HOPLIMIT]: 5 });
  });

  it('decodes proxy neighbours of both families from their own dump', () => {
    const proxies = recorded('proxyNeighbours')
      .filter((message) => message.type === MessageType.NEWNEIGH)
      .map(decodeNeighbour);
    expect(proxies.map((proxy) => [proxy.destination, proxy.index, proxy.flags & NeighbourFlag.PROXY]).sort()).toEqual([
      ['10.99.0.77', fixture.indexes.veth0, NeighbourFlag.PROXY],
      ['fd00:99::77', fixture.indexes.veth0, NeighbourFlag.PROXY],
    ]);
  });

  it('decodes a gateway of the other family (RTA_VIA) as the gateway', () => {
    const route = routeTo('10.53.0.0');
    expect([route.family, route.gateway, route.outputIndex]).toEqual([
      AddressFamily.INET,
      'fd00:99::1',
      fixture.indexes.veth0,
    ]);
  });

  it('decodes the IPv6 router preference (RTA_PREF) and the seconds a route has left (RTA_CACHEINFO)', () => {
    expect(routeTo('fd00:53::').preference).toBe(RoutePreference.HIGH);
    expect(routeTo('fd00:53::').expires).toBeUndefined();
    const expiring = routeTo('fd00:54::');
    expect(expiring.preference).toBe(RoutePreference.MEDIUM);
    // Asked for 600 s; the dump came a moment later.
    expect(expiring.expires).toBeGreaterThan(590);
    expect(expiring.expires).toBeLessThanOrEqual(600);
    // IPv4 routes carry no preference.
    expect(routeTo('10.50.0.0').preference).toBeUndefined();
  });

  it('decodes the nexthop object a route uses (RTA_NH_ID)', () => {
    const route = routeTo('10.55.0.0');
    expect(route.nextHopId).toBe(7);
    expect(route.encapType).toBeUndefined();
  });

  it('encodes each recorded route so that it decodes to the same route', () => {
    for (const destination of ['10.50.0.0', '10.51.0.0', '10.52.0.0', 'fd00:52::', '10.53.0.0', 'fd00:53::']) {
      const route = routeTo(destination);
      const again = decodeRoute(encoded(specOf(route)));
      expect(again).toEqual(route);
    }
  });
});

describe('encoding', () => {
  it('writes RTA_MULTIPATH as rtnexthop entries (weight - 1 in rtnh_hops), each followed by its attributes', () => {
    const message = encoded({
      destination: '10.60.0.0',
      destinationLength: 16,
      nextHops: [
        { gateway: '10.0.0.1', outputIndex: 2, weight: 3, flags: RouteFlag.ONLINK },
        { gateway: '10.0.0.2', outputIndex: 5, realm: 7 },
      ],
    });
    const attributes = new Attributes(message.payload, 12);
    // rtnh_len, rtnh_flags, rtnh_hops, rtnh_ifindex; then RTA_GATEWAY (and RTA_FLOW), little-endian.
    const first = '1000 04 02 02000000 0800 0500 0a000001';
    const second = '1800 00 00 05000000 0800 0500 0a000002 0800 0b00 07000000';
    expect(attributes.raw(RouteAttribute.MULTIPATH)?.toString('hex')).toBe(`${first} ${second}`.replaceAll(' ', ''));
    expect(attributes.has(RouteAttribute.OIF)).toBe(false);
    expect(attributes.has(RouteAttribute.GATEWAY)).toBe(false);
  });

  it('writes RTA_METRICS in RTAX_* order with the MTU merged in, the congestion control as a string', () => {
    const message = encoded({
      destination: '10.60.0.0',
      destinationLength: 16,
      gateway: '10.0.0.1',
      mtu: 1400,
      metrics: { [RouteMetric.CC_ALGO]: 'cubic', [RouteMetric.ADVMSS]: 1300, [RouteMetric.MTU]: 1200 },
      realm: 7,
    });
    const attributes = new Attributes(message.payload, 12);
    // RTAX_MTU 1400, RTAX_ADVMSS 1300, RTAX_CC_ALGO "cubic\0" and its padding.
    const metrics = '0800 0200 78050000 0800 0800 14050000 0a00 1000 637562696300 0000';
    expect(attributes.raw(RouteAttribute.METRICS)?.toString('hex')).toBe(metrics.replaceAll(' ', ''));
    expect(attributes.u32(RouteAttribute.FLOW)).toBe(7);
  });

  it('names the next hops in a delete (so that route goes, and no other) but not the metrics', () => {
    const attributes = new Attributes(
      encoded(
        {
          destination: '10.60.0.0',
          destinationLength: 16,
          metrics: { [RouteMetric.ADVMSS]: 1300 },
          nextHops: [{ gateway: '10.0.0.1', outputIndex: 2 }],
        },
        true,
      ).payload,
      12,
    );
    expect(attributes.has(RouteAttribute.MULTIPATH)).toBe(true);
    expect(attributes.has(RouteAttribute.METRICS)).toBe(false);
  });

  it('takes the family from a next hop gateway when the route has no destination', () => {
    const route = decodeRoute(encoded({ nextHops: [{ gateway: 'fd00::1', outputIndex: 2 }] }));
    expect(route.family).toBe(AddressFamily.INET6);
    expect(route.destinationLength).toBe(0);
  });

  it('asks for the proxy neighbour dump with NTF_PROXY in ndm_flags', () => {
    const writer = new MessageWriter();
    writer.beginMessage(MessageType.GETNEIGH, 0, 1);
    encodeGetNeighbour(writer, AddressFamily.UNSPEC, NeighbourFlag.PROXY);
    writer.endMessage();
    expect(splitMessages(writer.finish())[0]!.payload.readUInt8(10)).toBe(NeighbourFlag.PROXY);
  });
});

describe('gateways of the other family, preference and lifetime', () => {
  it('writes an IPv6 gateway of an IPv4 route as RTA_VIA (family, then address), a same-family one as RTA_GATEWAY', () => {
    const via = new Attributes(
      encoded({ family: AddressFamily.INET, destination: '10.53.0.0', destinationLength: 16, gateway: 'fd00:99::1' })
        .payload,
      12,
    );
    expect(via.raw(RouteAttribute.GATEWAY)).toBeUndefined();
    expect(via.raw(RouteAttribute.VIA)?.toString('hex')).toBe(`0a00${'fd000099000000000000000000000001'}`);
    const same = new Attributes(
      encoded({ destination: '10.53.0.0', destinationLength: 16, gateway: '10.99.0.1' }).payload,
      12,
    );
    expect(same.raw(RouteAttribute.VIA)).toBeUndefined();
    expect(same.raw(RouteAttribute.GATEWAY)?.toString('hex')).toBe('0a630001');
  });

  it('writes RTA_PREF and RTA_EXPIRES for IPv6 routes, no lifetime in a delete, neither for IPv4', () => {
    const spec: RouteSpec = {
      destination: 'fd00:54::',
      destinationLength: 48,
      gateway: 'fd00:99::1',
      preference: RoutePreference.LOW,
      expires: 120,
    };
    const added = new Attributes(encoded(spec).payload, 12);
    expect([added.u8(RouteAttribute.PREF), added.u32(RouteAttribute.EXPIRES)]).toEqual([RoutePreference.LOW, 120]);
    const deleted = new Attributes(encoded(spec, true).payload, 12);
    expect([deleted.u8(RouteAttribute.PREF), deleted.u32(RouteAttribute.EXPIRES)]).toEqual([
      RoutePreference.LOW,
      undefined,
    ]);
    const ipv4 = new Attributes(
      encoded({ destination: '10.54.0.0', destinationLength: 16, preference: 1, expires: 5 }).payload,
      12,
    );
    expect([ipv4.u8(RouteAttribute.PREF), ipv4.u32(RouteAttribute.EXPIRES)]).toEqual([undefined, undefined]);
  });
});

describe('malformed next hops', () => {
  const withMultipath = (bytes: string) => {
    const message = encoded({ destination: '10.60.0.0', destinationLength: 16 });
    const attribute = Buffer.from(bytes, 'hex');
    const header = Buffer.alloc(4);
    header.writeUInt16LE(4 + attribute.length, 0);
    header.writeUInt16LE(RouteAttribute.MULTIPATH, 2);
    return { ...message, payload: Buffer.concat([message.payload, header, attribute]) };
  };

  it('rejects an rtnexthop shorter than its header or longer than what is left', () => {
    expect(() => decodeRoute(withMultipath('0400000002000000'))).toThrow(MalformedMessageError);
    expect(() => decodeRoute(withMultipath('2000000002000000'))).toThrow(MalformedMessageError);
  });

  it('rejects a next hop whose attributes overrun it', () => {
    expect(() => decodeRoute(withMultipath('0c0000000200000008000500'))).toThrow(MalformedMessageError);
  });
});
