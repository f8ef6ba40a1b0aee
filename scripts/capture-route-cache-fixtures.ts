/**
 * Records a route dump (IPv4 and IPv6, the request vcnet sends) of a namespace whose route cache has
 * path-MTU exceptions, with what iproute2 lists as routes (`ip route show table all`) and as the
 * cache (`ip route show cache`), for the codec's unit tests. The exceptions are made by traffic: a
 * router with a 1280-byte hop to a far peer answers the namespace's DF pings with "fragmentation
 * needed" / "packet too big". Throwaway namespaces named VCNET_TEST_NAMESPACE_PREFIX (default vcnet)
 * -capture-cache-PID-*. Run as root: `npx tsx scripts/capture-route-cache-fixtures.ts`.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { AddressFamily, MessageFlag, MessageType } from '../src/netlink/codec/constants.js';
import { encodeGetRoute } from '../src/netlink/codec/route.js';
import { NetlinkHandle } from '../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';
import { serialise } from './serialise-netlink-message.js';

const base = `${process.env.VCNET_TEST_NAMESPACE_PREFIX || 'vcnet'}-capture-cache-${process.pid}`;
const names = { pod: `${base}-pod`, router: `${base}-router`, far: `${base}-far` };
const paths: string[] = [];
/** `ip -n NAMESPACE` with the arguments of one command line (no quoting needed here). */
const ip = (namespace: string, line: string) =>
  execFileSync('ip', ['-n', namespace, ...line.split(' ')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
const inside = (namespace: string, line: string) =>
  execFileSync('ip', ['netns', 'exec', namespace, ...line.split(' ')], { stdio: ['ignore', 'ignore', 'ignore'] });

try {
  for (const name of Object.values(names)) paths.push(createNamespace(name));
  for (const name of Object.values(names)) {
    inside(
      name,
      'sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0',
    );
  }
  ip(names.router, `link add veth0 type veth peer name eth0 netns ${names.pod}`);
  ip(names.router, `link add hop0 mtu 1280 type veth peer name eth0 mtu 1280 netns ${names.far}`);
  for (const [name, link, v4, v6] of [
    [names.router, 'veth0', '10.200.0.1/24', 'fd00:200::1/64'],
    [names.pod, 'eth0', '10.200.0.2/24', 'fd00:200::2/64'],
    [names.router, 'hop0', '10.209.0.1/24', 'fd00:209::1/64'],
    [names.far, 'eth0', '10.209.0.2/24', 'fd00:209::2/64'],
  ] as const) {
    ip(name, `link set ${link} up`);
    ip(name, `addr add ${v4} dev ${link}`);
    ip(name, `addr add ${v6} dev ${link} nodad`);
  }
  ip(names.pod, 'route add default via 10.200.0.1');
  ip(names.pod, '-6 route add default via fd00:200::1');
  ip(names.far, 'route add default via 10.209.0.1');
  ip(names.far, '-6 route add default via fd00:209::1');
  // A route of the pod's own to the far peer's subnet: an exception hangs under it, not under the default.
  ip(names.pod, 'route add 10.209.0.0/24 via 10.200.0.1 mtu 1400');
  for (const destination of ['10.209.0.2', 'fd00:209::2']) {
    for (let attempt = 0; !ip(names.pod, `route show cache table all ${destination}`).includes('mtu 1280'); attempt++) {
      if (attempt === 20) throw new Error(`no path-MTU exception for ${destination}`);
      try {
        inside(names.pod, `ping -c 1 -W 1 -M do -s 1300 ${destination}`);
      } catch {
        // Expected: the answer is the router's "too big".
      }
    }
  }

  const handle = NetlinkHandle.open(paths[0]);
  try {
    const [outcome] = await handle.socket
      .batch()
      .add(MessageType.GETROUTE, MessageFlag.DUMP, 'dump routes', (w) => encodeGetRoute(w, AddressFamily.UNSPEC))
      .send();
    if (!outcome?.ok) throw new Error('the route dump failed');
    const listed = (line: string) =>
      (JSON.parse(ip(names.pod, `-j ${line}`) || '[]') as Array<{ dst: string }>).map((route) => route.dst);
    const fixture = {
      source: `captured from Linux ${release()} by scripts/capture-route-cache-fixtures.ts`,
      /** What iproute2 listed as routes and as the route cache, by destination. */
      iproute2: {
        routes: [...listed('-4 route show table all'), ...listed('-6 route show table all')],
        cache: [...listed('-4 route show cache table all'), ...listed('-6 route show cache table all')],
      },
      routes: outcome.messages.map(serialise),
    };
    const output = new URL('../test/fixtures/netlink/route-cache.json', import.meta.url);
    writeFileSync(output, `${JSON.stringify(fixture, null, 1)}\n`);
    console.log(`wrote ${output.pathname}`);
  } finally {
    handle.close();
  }
} finally {
  for (const path of paths) deleteNamespace(path);
}
