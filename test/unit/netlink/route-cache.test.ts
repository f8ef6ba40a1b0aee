/**
 * A route dump of a namespace whose route cache has path-MTU exceptions, as the kernel sent it for
 * vcnet's request (test/fixtures/netlink/route-cache.json, recorded by
 * scripts/capture-route-cache-fixtures.ts with what iproute2 listed as routes and as the cache): the
 * dump carries the exceptions among the routes, and isCachedRoute tells them apart as iproute2 does.
 */
import { describe, expect, it } from 'vitest';
import { AddressFamily, MessageType } from '../../../src/netlink/codec/constants.js';
import { splitMessages } from '../../../src/netlink/codec/reader.js';
import { decodeRoute, isCachedRoute, type Route, RouteFlag } from '../../../src/netlink/codec/route.js';
import fixture from '../../fixtures/netlink/route-cache.json' with { type: 'json' };

const dumped = splitMessages(Buffer.from(fixture.routes.join(''), 'hex'))
  .filter((message) => message.type === MessageType.NEWROUTE)
  .map(decodeRoute);

/** A route's destination as `ip -j route show` gives it: a host route without its length. */
function iproute2Destination(route: Route): string {
  if (route.destination === undefined) return 'default';
  const host = route.family === AddressFamily.INET6 ? 128 : 32;
  return route.destinationLength === host ? route.destination : `${route.destination}/${route.destinationLength}`;
}

const sorted = (destinations: string[]) => [...destinations].sort();

describe('a recorded route dump with path-MTU exceptions', () => {
  it('carries the exceptions among the routes, flagged RTM_F_CLONED, with the learned MTU', () => {
    const cached = dumped.filter((route) => route.flags & RouteFlag.CLONED);
    expect(cached.map((route) => [route.destination, route.destinationLength, route.mtu])).toEqual(
      expect.arrayContaining([
        ['10.209.0.2', 32, 1280],
        ['fd00:209::2', 128, 1280],
      ]),
    );
    expect(cached).toHaveLength(2);
    // They expire by themselves, and come as routes to a host: nothing else tells them from one.
    for (const route of cached) expect(route.expires).toBeGreaterThan(0);
  });

  it('isCachedRoute splits the dump as iproute2 listed it: `ip route show` and `ip route show cache`', () => {
    expect(sorted(dumped.filter((route) => !isCachedRoute(route)).map(iproute2Destination))).toEqual(
      sorted(fixture.iproute2.routes),
    );
    expect(sorted(dumped.filter(isCachedRoute).map(iproute2Destination))).toEqual(sorted(fixture.iproute2.cache));
  });
});
