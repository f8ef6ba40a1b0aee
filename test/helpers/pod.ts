/**
 * A pod namespace prepared the way CNI leaves one: eth0 (a veth whose peer sits in a "node"
 * namespace) with an IPv4 and an IPv6 address, a default route, an extra route with an MTU, and a
 * permanent neighbour. Plus a fingerprint of a namespace for before/after comparisons.
 */
import type { NetworkConfig } from '../../src/network/config.js';
import type { InterworkingModel } from '../../src/network/interworking-model.js';
import { makeNamespace, type TestNamespace } from './namespace.js';

export interface PodFixture {
  pod: TestNamespace;
  node: TestNamespace;
}

export interface PodOptions {
  interfaces?: number;
  /**
   * The pod veths' transmit queue length. A veth gets the kernel's 1000 by default; CNI's bridge and
   * ptp plugins make theirs with 0, which the kernel raises to 1000 when the link gets its first qdisc.
   */
  txQueueLength?: number;
}

export function makePod(options: PodOptions = {}): PodFixture {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  // No duplicate address detection: the kernel's IPv6 link-local addresses (and their local routes)
  // appear at once instead of a second or two later, so fingerprints do not race with DAD.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  const count = options.interfaces ?? 1;
  for (let i = 0; i < count; i++) {
    const name = `eth${i}`;
    const queue = options.txQueueLength === undefined ? [] : ['txqueuelen', String(options.txQueueLength)];
    node.exec('ip', ['link', 'add', `veth${i}`, 'type', 'veth', 'peer', 'name', name, ...queue, 'netns', pod.name]);
    node.exec('ip', ['link', 'set', `veth${i}`, 'up']);
    node.exec('ip', ['addr', 'add', `10.${200 + i}.0.1/24`, 'dev', `veth${i}`]);
    pod.exec('ip', ['link', 'set', name, 'up']);
    pod.exec('ip', ['addr', 'add', `10.${200 + i}.0.2/24`, 'dev', name]);
    pod.exec('ip', ['addr', 'add', `fd00:${200 + i}::2/64`, 'dev', name, 'nodad']);
    pod.exec('ip', ['route', 'add', `10.${100 + i}.0.0/16`, 'via', `10.${200 + i}.0.1`, 'mtu', '1400']);
    pod.exec('ip', [
      'neigh',
      'add',
      `10.${200 + i}.0.9`,
      'lladdr',
      `02:00:00:00:0${i}:09`,
      'dev',
      name,
      'nud',
      'permanent',
    ]);
  }
  pod.exec('ip', ['route', 'add', 'default', 'via', '10.200.0.1']);
  awaitIpv6Ready(pod, count);
  return { pod, node };
}

/**
 * Waits until each pod link's IPv6 side is complete: its link-local address and the local routes of
 * its addresses. Without DAD they still wait for the kernel to see the link operationally up, which
 * linkwatch reports from a work queue, late on a busy machine; a fingerprint taken before that
 * lacks routes that one taken later has.
 */
function awaitIpv6Ready(pod: TestNamespace, count: number): void {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const waiting: string[] = [];
    for (let i = 0; i < count; i++) {
      const name = `eth${i}`;
      const local = pod
        .ipJson<Array<{ dst: string }>>('-6', 'route', 'show', 'table', 'local', 'dev', name)
        .map((route) => route.dst);
      const linkLocal = local.some((dst) => dst.startsWith('fe80:'));
      if (!linkLocal || !local.includes(`fd00:${200 + i}::2`)) waiting.push(name);
    }
    if (waiting.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`${pod.name}: ${waiting.join(', ')} got no IPv6 local routes within 15 s of being set up`);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/**
 * Waits (15 s at most) until link `name` in `namespace` has its IPv6 link-local address, which the
 * kernel adds only once linkwatch has seen the link operationally up: a CNI plugin (bridge) returns
 * with the veth up, and on a busy machine the address comes up to a second later, so a fingerprint
 * taken at once lacks it and one taken after detach has it.
 */
export function awaitLinkLocal(namespace: TestNamespace, name: string): void {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const local = namespace
      .ipJson<Array<{ dst: string }>>('-6', 'route', 'show', 'table', 'local', 'dev', name)
      .map((route) => route.dst);
    if (local.some((dst) => dst.startsWith('fe80:'))) return;
    if (Date.now() > deadline) throw new Error(`${namespace.name}: ${name} got no IPv6 link-local address within 15 s`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/**
 * A namespace playing the guest of a one-interface makePod() as attach and configure-guest leave
 * it: eth0 up with the pod's addresses (a route set pushed later names eth0 and its gateway).
 */
export function makeConfiguredGuest(): TestNamespace {
  const guest = makeNamespace('guest');
  guest.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  guest.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
  for (const link of ['eth0', 'eth0p']) guest.exec('ip', ['link', 'set', link, 'up']);
  guest.exec('ip', ['addr', 'add', '10.200.0.2/24', 'dev', 'eth0']);
  guest.exec('ip', ['addr', 'add', 'fd00:200::2/64', 'dev', 'eth0', 'nodad']);
  return guest;
}

/** The MAC of link `name` in `namespace`, as iproute2 prints it. */
export function linkMac(namespace: TestNamespace, name = 'eth0'): string {
  const [link] = namespace.ipJson<Array<{ address: string }>>('link', 'show', name);
  if (!link) throw new Error(`no link ${name} in ${namespace.name}`);
  return link.address;
}

/** The names of vcnet's taps and macvtaps in `namespace` (`*_kata`), sorted. */
export function kataLinks(namespace: TestNamespace): string[] {
  return namespace
    .exec('ip', ['-br', 'link', 'show'])
    .split('\n')
    .map((line) => line.split(/[\s@]/)[0])
    .filter((name): name is string => name?.endsWith('_kata') === true)
    .sort();
}

const VOLATILE_FLAGS = new Set(['NO-CARRIER', 'LOWER_UP', 'M-DOWN']);

/** The namespace as iproute2 prints it, minus what changes by itself (counters, timers, dynamic neighbours). */
export function fingerprint(namespace: TestNamespace): Record<string, unknown> {
  const links = namespace.ipJson<Array<Record<string, unknown>>>('-d', 'link', 'show').map((link) => ({
    ifname: link.ifname,
    ifindex: link.ifindex,
    // Carrier flags follow the peer and the VM by themselves; the administrative ones are compared.
    flags: (link.flags as string[]).filter((flag) => !VOLATILE_FLAGS.has(flag)),
    mtu: link.mtu,
    address: link.address,
    group: link.group,
    kind: (link.linkinfo as { info_kind?: string } | undefined)?.info_kind,
    qdisc: link.qdisc,
    // A link with no transmit queue (CNI's veths) gets one with its first qdisc: detach must put it back.
    txqlen: link.txqlen,
  }));
  const addresses = namespace
    .ipJson<Array<{ ifname: string; addr_info: Array<Record<string, unknown>> }>>('addr', 'show')
    .map((entry) => ({
      ifname: entry.ifname,
      addresses: entry.addr_info.map((info) => `${info.local}/${info.prefixlen} ${info.scope}`).sort(),
    }));
  const routes = namespace
    .ipJson<Array<Record<string, unknown>>>('route', 'show', 'table', 'all')
    .concat(namespace.ipJson<Array<Record<string, unknown>>>('-6', 'route', 'show', 'table', 'all'))
    .map((route) => JSON.stringify(route))
    .sort();
  const neighbours = namespace
    .ipJson<Array<{ dst: string; dev: string; lladdr?: string; state: string[] }>>('neigh', 'show', 'nud', 'permanent')
    .map((entry) => `${entry.dst} ${entry.dev} ${entry.lladdr ?? ''}`)
    .sort();
  const qdiscs = namespace
    .tcJson<Array<Record<string, unknown>>>('qdisc', 'show')
    .map((q) => `${q.dev} ${q.kind} ${q.handle} ${q.parent ?? 'root'}`)
    .sort();
  const filters = links.map((link) => ({
    ifname: link.ifname,
    ingress: namespace.tcJson<unknown[]>('filter', 'show', 'dev', String(link.ifname), 'ingress'),
  }));
  return { links, addresses, routes, neighbours, qdiscs, filters };
}

/**
 * The NetworkConfig library tests attach with: `namespace` as it is (not made by vcnet, scanned),
 * `model`, one queue, no vhost-net (this machine has none); `more` adds or overrides fields.
 */
export function podConfig(
  namespace: TestNamespace,
  model: InterworkingModel,
  more: Partial<NetworkConfig> = {},
): NetworkConfig {
  return {
    namespacePath: namespace.path,
    model,
    namespaceCreatedByVcnet: false,
    disableNewNetns: false,
    queues: 1,
    vhostNet: 'off',
    ...more,
  };
}

/** podConfig with tcfilter, the one most library tests attach with. */
export function tcfilterConfig(namespace: TestNamespace, more: Partial<NetworkConfig> = {}): NetworkConfig {
  return podConfig(namespace, 'tcfilter', more);
}

/** What `promise` rejected with, or an Error saying it succeeded. */
export function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error('it succeeded'),
    (caught: unknown) => caught,
  );
}
