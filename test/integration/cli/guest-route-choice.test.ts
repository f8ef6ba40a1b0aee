/**
 * The guest gets the route the pod prefers per destination. Kata's agent Route has no metric and the
 * agent replaces a route to a destination it has, so sending every pod route left the guest on the
 * last one sent (the least preferred). attach --json, configure-guest and list-routes all give the
 * preferred one, and attach warns about the others; routes the guest cannot get at all (another
 * table, multipath) are named in one warning.
 *
 * The guest is a namespace served by vcnet's agent, its eth0 a veth with the pod link's MAC.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { logRecords } from '../../helpers/node-snapshot.js';
import { makeConfiguredGuest, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-route-choice-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

interface RouteJson {
  dest: string;
  gateway: string;
  device: string;
}

describe('the guest gets the route the pod prefers per destination', () => {
  it('attach, configure-guest and list-routes give the lowest metric; attach names the others and the skipped', async () => {
    const { pod, node } = makePod({ interfaces: 2 });
    node.exec('ip', ['addr', 'add', '10.200.0.3/24', 'dev', 'veth0']);
    // Two routes to one destination on one link; the kernel lists the preferred (metric 5) first.
    pod.exec('ip', ['route', 'add', '10.21.0.0/16', 'via', '10.200.0.1', 'metric', '6']);
    pod.exec('ip', ['route', 'add', '10.21.0.0/16', 'via', '10.200.0.3', 'metric', '5']);
    // Two default routes on two links: eth1's (metric 200) is the pod's fallback, eth0's (100) its choice.
    pod.exec('ip', ['route', 'del', 'default']);
    pod.exec('ip', ['route', 'add', 'default', 'via', '10.201.0.1', 'dev', 'eth1', 'metric', '200']);
    pod.exec('ip', ['route', 'add', 'default', 'via', '10.200.0.1', 'dev', 'eth0', 'metric', '100']);
    // Routes no guest gets: policy routing's table, a multipath route.
    pod.exec('ip', ['route', 'add', '10.14.9.0/24', 'dev', 'eth0', 'table', '100']);
    pod.exec('ip', ['route', 'add', '10.15.0.0/16', 'nexthop', 'via', '10.200.0.1', 'nexthop', 'via', '10.201.0.1']);
    const podMac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    const guest = makeConfiguredGuest();
    guest.exec('ip', ['link', 'set', 'eth0', 'address', podMac]);
    // The guest's eth1 (for the route via eth1): a second veth with eth1's MAC and address.
    const pod1Mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth1')[0]!.address;
    guest.exec('ip', ['link', 'add', 'eth1', 'address', pod1Mac, 'type', 'veth', 'peer', 'name', 'eth1p']);
    for (const name of ['eth1', 'eth1p']) guest.exec('ip', ['link', 'set', name, 'up']);
    guest.exec('ip', ['addr', 'add', '10.201.0.2/24', 'dev', 'eth1']);

    const api = await FakeCloudHypervisor.start();
    stops.push(() => api.stop());
    const agentPath = join(stateDirectory(), 'agent.sock');
    const attached = vcnet([
      ...['attach', '--sandbox', 'rc', '--netns', pod.path, '--state-dir', stateDirectory(), '--json'],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    stops.push(() => vcnet(['detach', '--sandbox', 'rc', '--state-dir', stateDirectory()]));
    const chosen = (routes: RouteJson[]) =>
      routes
        .filter((route) => route.dest === '10.21.0.0/16' || route.dest === '0.0.0.0/0')
        .map((route) => `${route.dest} via ${route.gateway} dev ${route.device}`)
        .sort();
    const expected = ['0.0.0.0/0 via 10.200.0.1 dev eth0', '10.21.0.0/16 via 10.200.0.3 dev eth0'];
    expect(chosen(JSON.parse(attached.stdout).routes)).toEqual(expected);
    const warnings = logRecords(attached.stderr).map((record) => String(record.msg));
    expect(warnings).toContainEqual(
      expect.stringMatching(
        /one route per destination.*10\.21\.0\.0\/16 via 10\.200\.0\.1 dev eth0 metric 6 \(kept 10\.21\.0\.0\/16 via 10\.200\.0\.3 dev eth0 metric 5\); 0\.0\.0\.0\/0 via 10\.201\.0\.1 dev eth1 metric 200 \(kept 0\.0\.0\.0\/0 via 10\.200\.0\.1 dev eth0 metric 100\)/,
      ),
    );
    expect(warnings).toContainEqual(
      expect.stringMatching(
        /does not get 2 routes.*routes in table 100 \(policy routing\): 10\.14\.9\.0\/24; multipath routes: 10\.15\.0\.0\/16 \(2 next hops\)/,
      ),
    );

    const listed = vcnet(['list-routes', 'rc', '--state-dir', stateDirectory(), '--json']);
    expect(chosen(JSON.parse(listed.stdout))).toEqual(expected);

    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 5_000 });
    stops.push(() => agent.stop());
    const configured = await vcnetAsync([
      ...['configure-guest', '--sandbox', 'rc', '--state-dir', stateDirectory(), '--json', '--timeout', '20000'],
    ]).done;
    expect(configured.status, configured.stderr).toBe(0);
    const guestRoutes = guest
      .ipJson<Array<{ dst: string; gateway?: string; dev: string }>>('route', 'show')
      .filter((route) => route.dst === '10.21.0.0/16' || route.dst === 'default')
      .map((route) => `${route.dst} via ${route.gateway} dev ${route.dev}`)
      .sort();
    expect(guestRoutes).toEqual(['10.21.0.0/16 via 10.200.0.3 dev eth0', 'default via 10.200.0.1 dev eth0']);
  }, 90_000);
});
