/**
 * Records the kernel's replies for routes with metrics, realms, multipath next hops, a gateway of the
 * other family, an IPv6 preference and lifetime and a nexthop object, and for proxy neighbours, made
 * by iproute2 (not by vcnet's encoder) in a throwaway namespace, for the codec's unit tests. Run as
 * root: `npx tsx scripts/capture-route-attribute-fixtures.ts`.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { MessageFlag, MessageType } from '../src/netlink/codec/constants.js';
import { encodeGetNeighbour, NeighbourFlag } from '../src/netlink/codec/neighbour.js';
import { encodeGetRoute } from '../src/netlink/codec/route.js';
import type { MessageWriter } from '../src/netlink/codec/writer.js';
import { NetlinkHandle } from '../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';
import { serialise } from './serialise-netlink-message.js';

const name = `vcnet-capture-routes-${process.pid}`;
const path = createNamespace(name);
const handle = NetlinkHandle.open(path);
/** `ip -n NAME` with the arguments of one command line (no quoting needed here). */
const ip = (line: string) =>
  execFileSync('ip', ['-n', name, ...line.split(' ')], { stdio: ['ignore', 'ignore', 'inherit'] });
try {
  ip('link add veth0 type veth peer name veth1');
  ip('link set veth0 up');
  ip('link set veth1 up');
  ip('addr add 10.99.0.2/24 dev veth0');
  ip('addr add 10.98.0.2/24 dev veth1');
  ip('addr add fd00:99::2/64 dev veth0 nodad');
  // rtt 300 without a unit is sent as it is; iproute2 always locks rto_min.
  ip(
    'route add 10.50.0.0/16 via 10.99.0.1 mtu lock 1400 advmss 1300 initcwnd 20 rto_min 50ms rtt 300 congctl cubic features ecn',
  );
  ip('route add 10.51.0.0/16 via 10.99.0.1 realms 3/7');
  ip(
    'route add 10.52.0.0/16 nexthop via 10.99.0.1 dev veth0 weight 1 realms 4 nexthop via 10.98.0.9 dev veth1 weight 3 onlink',
  );
  ip('-6 route add fd00:52::/48 hoplimit 5 nexthop via fd00:99::1 weight 1 nexthop via fd00:99::5 weight 2');
  // A gateway of the other family (RTA_VIA), an IPv6 preference and lifetime, a nexthop object.
  ip('route add 10.53.0.0/16 via inet6 fd00:99::1 dev veth0');
  ip('-6 route add fd00:53::/48 via fd00:99::1 pref high');
  ip('-6 route add fd00:54::/48 via fd00:99::1 expires 600');
  ip('nexthop add id 7 via 10.99.0.1 dev veth0');
  ip('route add 10.55.0.0/16 nhid 7');
  ip('neigh add proxy 10.99.0.77 dev veth0');
  ip('-6 neigh add proxy fd00:99::77 dev veth0');

  const dumps: Array<[string, number, (w: MessageWriter) => void]> = [
    ['routes', MessageType.GETROUTE, (w) => encodeGetRoute(w)],
    ['proxyNeighbours', MessageType.GETNEIGH, (w) => encodeGetNeighbour(w, 0, NeighbourFlag.PROXY)],
  ];
  const fixture: Record<string, unknown> = {
    source: `captured from Linux ${release()} by scripts/capture-route-attribute-fixtures.ts`,
    indexes: {
      veth0: (await handle.linkByName('veth0')).index,
      veth1: (await handle.linkByName('veth1')).index,
    },
  };
  for (const [part, type, encode] of dumps) {
    const [outcome] = await handle.socket.batch().add(type, MessageFlag.DUMP, `dump ${part}`, encode).send();
    if (!outcome?.ok) throw new Error(`dump ${part} failed`);
    fixture[part] = outcome.messages.map(serialise);
  }
  const output = new URL('../test/fixtures/netlink/route-attributes.json', import.meta.url);
  writeFileSync(output, `${JSON.stringify(fixture, null, 1)}\n`);
  console.log(`wrote ${output.pathname}`);
} finally {
  handle.close();
  deleteNamespace(path);
}
