/**
 * The macvtap model takes the pod link's routes with its addresses, and detach puts them back as
 * `ip route add` would: only where the place (table, destination, metric) is still free. A tenant
 * with CAP_NET_ADMIN in the pod who set a route there since attach keeps it, and detach says so.
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { logRecords } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-detach-routes-');

interface IpRoute {
  dst: string;
  gateway?: string;
}

describe('detach of the macvtap model next to routes the tenant set', () => {
  it("leaves the tenant's default route in place of the recorded one, and names both", () => {
    const { pod } = makePod();
    const attach = vcnet([
      'attach',
      '--sandbox',
      't',
      '--netns',
      pod.path,
      '--model',
      'macvtap',
      '--state-dir',
      stateDirectory(),
    ]);
    expect(attach.status, attach.stderr).toBe(0);
    // The tenant, inside the pod, gives eth0 an address and a default route of its own.
    pod.exec('ip', ['addr', 'add', '10.200.0.7/24', 'dev', 'eth0']);
    pod.exec('ip', ['route', 'add', 'default', 'via', '10.200.0.99']);

    const detach = (...extra: string[]) =>
      vcnet(['detach', '--sandbox', 't', '--state-dir', stateDirectory(), ...extra]);
    const dry = detach('--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).not.toMatch(/^ip route \w+ default/m);
    expect(dry.stdout).toMatch(/^ip route add 10\.100\.0\.0\/16 via 10\.200\.0\.1 dev eth0 /m);
    expect(dry.stdout).toMatch(
      /^# notice: left the route default via 10\.200\.0\.99 dev eth0 .* the route attach removed, default via 10\.200\.0\.1 dev eth0 /m,
    );

    const result = detach();
    expect(result.status, result.stderr).toBe(0);
    const routes = pod.ipJson<IpRoute[]>('route', 'show');
    expect(routes.filter((route) => route.dst === 'default').map((route) => route.gateway)).toEqual(['10.200.0.99']);
    expect(routes.find((route) => route.dst === '10.100.0.0/16')?.gateway).toBe('10.200.0.1');
    expect(logRecords(result.stderr).map((record) => record.msg)).toContainEqual(
      expect.stringMatching(
        /^left the route default via 10\.200\.0\.99 dev eth0 .* default via 10\.200\.0\.1 dev eth0 /,
      ),
    );
  });
});
