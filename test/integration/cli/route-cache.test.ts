/**
 * The kernel's route cache is not routes. A pod that talked across a smaller hop has path-MTU
 * exceptions (`ip route show cache`: `10.209.0.2 via 10.200.0.1 ... mtu 1280`, the IPv6 `/128` too),
 * which a route dump lists with RTM_F_CLONED. Taken for routes, scan showed them, attach gave the
 * guest a permanent /32 and /128 with the stale MTU, and the macvtap model made them routes of the
 * pod on detach. Scan, attach, list-routes and detach leave them out; the kernel keeps them.
 */
import { describe, expect, it } from 'vitest';
import { RouteFlag } from '../../../src/netlink/codec/route.js';
import { NetlinkHandle } from '../../../src/netlink/handle.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { addSmallHop, cachedPathMtu, FAR_PEER, learnPathMtu, SMALL_HOP_MTU } from '../../helpers/path-mtu.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-route-cache-');

const CACHED = [`${FAR_PEER.v4}/32`, `${FAR_PEER.v6}/128`];

/** makePod() with an IPv6 default route too, its node a router to a far peer behind a 1280-byte hop, and the pod's exceptions for it. */
async function podWithPathMtuExceptions() {
  const { pod, node } = makePod();
  node.exec('ip', ['addr', 'add', 'fd00:200::1/64', 'dev', 'veth0', 'nodad']);
  pod.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:200::1']);
  addSmallHop(node);
  await learnPathMtu(pod);
  return pod;
}

interface DestinationJson {
  dest: string;
  mtu?: number | null;
}

const destinations = (routes: DestinationJson[]) => routes.map((route) => route.dest);

describe('path-MTU exceptions of the route cache', () => {
  it('are no routes to NetlinkHandle.routes() and snapshot(), and listed by cachedRoutes(), IPv4 and IPv6', async () => {
    const pod = await podWithPathMtuExceptions();
    using handle = NetlinkHandle.open(pod.path);
    const routes = await handle.routes({ table: 'all' });
    expect(routes.filter((route) => route.flags & RouteFlag.CLONED)).toEqual([]);
    expect(routes.map((route) => route.destination)).not.toContain(FAR_PEER.v4);
    expect(routes.map((route) => route.destination)).not.toContain(FAR_PEER.v6);
    expect(routes.map((route) => route.destination ?? 'default')).toContain('10.100.0.0');
    const snapshot = await handle.snapshot(['routes']);
    expect(snapshot.routes.map((route) => route.destination)).toEqual(routes.map((route) => route.destination));
    const cached = await handle.cachedRoutes();
    expect(cached.map((route) => [route.destination, route.destinationLength, route.mtu]).sort()).toEqual([
      [FAR_PEER.v4, 32, SMALL_HOP_MTU],
      [FAR_PEER.v6, 128, SMALL_HOP_MTU],
    ]);
  });

  it('scan, attach and list-routes give no route for them', async () => {
    const pod = await podWithPathMtuExceptions();
    const scan = vcnet(['scan', '--netns', pod.path, '--json']);
    expect(scan.status, scan.stderr).toBe(0);
    const [eth0] = JSON.parse(scan.stdout) as Array<{ name: string; routes: DestinationJson[] }>;
    expect(eth0?.name).toBe('eth0');
    expect(destinations(eth0!.routes)).toEqual(expect.arrayContaining(['default', '10.100.0.0/16']));
    for (const dest of CACHED) expect(destinations(eth0!.routes)).not.toContain(dest);

    const attached = vcnet([
      ...['attach', '--sandbox', 'pmtu', '--netns', pod.path, '--state-dir', stateDirectory(), '--json'],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    try {
      const guestRoutes = destinations((JSON.parse(attached.stdout) as { routes: DestinationJson[] }).routes);
      expect(guestRoutes).toEqual(expect.arrayContaining(['0.0.0.0/0', '::/0', '10.100.0.0/16']));
      for (const dest of CACHED) expect(guestRoutes).not.toContain(dest);
      const listed = vcnet(['list-routes', 'pmtu', '--state-dir', stateDirectory(), '--json']);
      expect(listed.status, listed.stderr).toBe(0);
      expect(destinations(JSON.parse(listed.stdout) as DestinationJson[]).sort()).toEqual([...guestRoutes].sort());
    } finally {
      const detached = vcnet(['detach', '--sandbox', 'pmtu', '--state-dir', stateDirectory()]);
      expect(detached.status, detached.stderr).toBe(0);
    }
    // The kernel had them all along: the test looked at the real thing.
    expect(cachedPathMtu(pod, FAR_PEER.v4)).toBe(SMALL_HOP_MTU);
    expect(cachedPathMtu(pod, FAR_PEER.v6)).toBe(SMALL_HOP_MTU);
  });

  it('the macvtap model takes and puts back the routes of the pod link, never an exception as a route', async () => {
    const pod = await podWithPathMtuExceptions();
    const show = () => [
      ...pod.ipJson<unknown[]>('-4', 'route', 'show'),
      ...pod.ipJson<unknown[]>('-6', 'route', 'show'),
    ];
    const before = show();
    // Each command succeeds, and the dry runs' ip commands name no exception.
    const run = (command: 'attach' | 'detach', ...extra: string[]) => {
      const model = command === 'attach' ? ['--netns', pod.path, '--model', 'macvtap'] : [];
      const result = vcnet([command, '--sandbox', 'pmtu', ...model, '--state-dir', stateDirectory(), ...extra]);
      expect(result.status, result.stderr).toBe(0);
      for (const address of [FAR_PEER.v4, FAR_PEER.v6]) expect(result.stdout).not.toContain(address);
    };
    run('attach', '--dry-run');
    run('attach');
    run('detach', '--dry-run');
    run('detach');
    expect(show()).toEqual(before);
  });
});
