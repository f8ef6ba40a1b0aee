/**
 * A path-MTU exception in the kernel's route cache, made the way traffic makes one: a far peer behind
 * a 1280-byte hop of a router, and a DF ping too big for that hop from the namespace that gets the
 * exception (the router answers "fragmentation needed" / "packet too big"). `ip route show` does not
 * list the exceptions; `ip route show cache` does.
 */
import { makeNamespace, type TestNamespace } from './namespace.js';

export const FAR_PEER = { v4: '10.209.0.2', v6: 'fd00:209::2' } as const;
export const SMALL_HOP_MTU = 1280;

/**
 * Makes `router` forward, and puts a far peer (FAR_PEER) behind a link of SMALL_HOP_MTU bytes from
 * it. The namespace that pings FAR_PEER routes to it through `router`.
 */
export function addSmallHop(router: TestNamespace): TestNamespace {
  const peer = makeNamespace('far');
  for (const namespace of [router, peer]) {
    namespace.exec('sysctl', [
      '-qw',
      'net.ipv4.ip_forward=1',
      'net.ipv6.conf.all.forwarding=1',
      'net.ipv6.conf.all.accept_dad=0',
      'net.ipv6.conf.default.accept_dad=0',
    ]);
  }
  const mtu = String(SMALL_HOP_MTU);
  router.exec('ip', ['link', 'add', 'hop0', 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', mtu]);
  router.exec('ip', ['link', 'set', 'eth0', 'netns', peer.name]);
  router.exec('ip', ['link', 'set', 'hop0', 'up']);
  router.exec('ip', ['addr', 'add', '10.209.0.1/24', 'dev', 'hop0']);
  router.exec('ip', ['addr', 'add', 'fd00:209::1/64', 'dev', 'hop0', 'nodad']);
  peer.exec('ip', ['link', 'set', 'eth0', 'up']);
  peer.exec('ip', ['addr', 'add', `${FAR_PEER.v4}/24`, 'dev', 'eth0']);
  peer.exec('ip', ['addr', 'add', `${FAR_PEER.v6}/64`, 'dev', 'eth0', 'nodad']);
  peer.exec('ip', ['route', 'add', 'default', 'via', '10.209.0.1']);
  peer.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:209::1']);
  return peer;
}

interface CachedRoute {
  dst: string;
  metrics?: Array<{ mtu?: number }>;
}

/** The path MTU `namespace`'s route cache has for `destination` (IPv4 or IPv6), if it has one. */
export function cachedPathMtu(namespace: TestNamespace, destination: string): number | undefined {
  const family = destination.includes(':') ? '-6' : '-4';
  const cached = namespace.ipJson<CachedRoute[]>(family, 'route', 'show', 'cache', 'table', 'all');
  return cached.find((route) => route.dst === destination)?.metrics?.find((metric) => metric.mtu)?.mtu;
}

/**
 * Sends DF pings too big for the small hop from `namespace` to FAR_PEER (IPv4 and IPv6) until its
 * route cache has an exception with SMALL_HOP_MTU for both; throws when one never comes (a few tries:
 * the first ping may wait for neighbour resolution on the way).
 */
export async function learnPathMtu(namespace: TestNamespace): Promise<void> {
  for (const destination of [FAR_PEER.v4, FAR_PEER.v6]) {
    for (let attempt = 0; cachedPathMtu(namespace, destination) !== SMALL_HOP_MTU; attempt++) {
      if (attempt === 20) throw new Error(`no path-MTU exception for ${destination} after ${attempt} DF pings`);
      try {
        namespace.exec('ping', ['-c', '1', '-W', '1', '-M', 'do', '-s', '1300', destination]);
      } catch {
        // Expected: the ping's answer is the router's "too big", not an echo reply.
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
