/**
 * The attach and detach dry-run paste tests run the same cases: each model, multi-queue, Kata's rate
 * limits from a configuration.toml, and a macvtap pod link with the attributes its save and restore
 * must name the way iproute2 takes them.
 */
import { randomInt } from 'node:crypto';
import { filePerTestFile, RATE_LIMITED_KATA_CONFIG } from './cli.js';
import type { TestNamespace } from './namespace.js';

export interface DryRunCase {
  model: string;
  extra: string[];
  /** Shapes the pod further after makePod (the same in every namespace a case makes). */
  shape?: (pod: TestNamespace) => void;
  label: string;
}

/**
 * Beyond makePod's: a gateway of the other family, an IPv6 preference, an address metric and
 * lifetime, a neighbour's protocol and an IPv6 router entry.
 */
export function addPodLinkAttributes(pod: TestNamespace): void {
  for (const line of [
    'route add 10.56.0.0/16 via inet6 fd00:200::1 dev eth0',
    '-6 route add fd56::/48 via fd00:200::1 dev eth0 pref high',
    'addr add 10.210.0.2/24 dev eth0 metric 77 valid_lft 3600 preferred_lft 1800',
    'neigh add 10.200.0.20 lladdr 02:00:00:00:00:20 dev eth0 nud permanent protocol static',
    '-6 neigh add fd00:200::20 lladdr 02:00:00:00:00:21 dev eth0 nud permanent router',
  ]) {
    pod.exec('ip', line.split(' '));
  }
}

/**
 * Link names the shell would run as commands if the printed plan left them unquoted (the kernel takes
 * `;`, `|`, `$`, quotes and braces in a name, and the pod's owner picks it). Run as a command, the
 * first makes a file Q in the shell's directory.
 */
// biome-ignore lint/suspicious/noTemplateCurlyInString: the shell's ${IFS}, meant literally
export const HOSTILE_LINK_NAMES = ['e;touch${IFS}Q', "q'x|y`z`"] as const;

/** A veth pair with the hostile names, both ends in the pod with an address, and a route through one. */
export function addHostileLinks(pod: TestNamespace): void {
  const [first, second] = HOSTILE_LINK_NAMES;
  pod.exec('ip', ['link', 'add', first, 'type', 'veth', 'peer', 'name', second]);
  pod.exec('ip', ['addr', 'add', '10.230.0.1/24', 'dev', first]);
  pod.exec('ip', ['addr', 'add', '10.230.0.2/24', 'dev', second]);
  pod.exec('ip', ['link', 'set', first, 'up']);
  pod.exec('ip', ['link', 'set', second, 'up']);
  pod.exec('ip', ['route', 'add', '10.231.0.0/16', 'via', '10.230.0.9', 'dev', first]);
}

/**
 * eth0 as the CNI ptp plugin leaves it: no prefix route for its subnet, which goes via the gateway
 * instead (reached by a host route). Detach puts that route back over the prefix route the kernel
 * makes when the address comes back (`ip route replace`).
 */
export function routeSubnetViaGateway(pod: TestNamespace): void {
  for (const line of [
    'route del 10.200.0.0/24 dev eth0',
    'route add 10.200.0.1/32 dev eth0 scope link src 10.200.0.2',
    'route add 10.200.0.0/24 via 10.200.0.1 dev eth0 src 10.200.0.2',
  ]) {
    pod.exec('ip', line.split(' '));
  }
}

/**
 * The pod's own macvtap (a CNI plugin's, an operator's) with an address: the VM uses it as it is, and
 * rate limits put an htb and an ifb on it. At a random high index, so its /dev/tap<index> is its own
 * beside the other namespaces' macvtaps.
 */
export function addPodMacvtap(pod: TestNamespace): void {
  pod.exec('ip', ['link', 'add', 'mvp', 'type', 'veth', 'peer', 'name', 'mvq']);
  pod.exec('ip', ['link', 'set', 'mvp', 'up']);
  const index = String(30000 + randomInt(30000));
  pod.exec('ip', ['link', 'add', 'link', 'mvp', 'name', 'mvt', 'index', index, 'type', 'macvtap', 'mode', 'bridge']);
  pod.exec('ip', ['link', 'set', 'mvt', 'up']);
  pod.exec('ip', ['addr', 'add', '10.231.0.2/24', 'dev', 'mvt']);
}

/**
 * The pod veths without a transmit queue, as CNI's bridge and ptp plugins make them (txqueuelen 0):
 * the kernel gives each 1000 with its first qdisc, and attach's printed commands must leave 0 too.
 */
export function withoutTransmitQueue(pod: TestNamespace): void {
  for (const name of ['eth0', 'eth1']) pod.exec('ip', ['link', 'set', name, 'txqueuelen', '0']);
}

/** The cases, with a configuration.toml of rate limits made for the calling test file. */
export function dryRunCases(): DryRunCase[] {
  const rateLimited = filePerTestFile('configuration.toml', RATE_LIMITED_KATA_CONFIG);
  const limits = '--config (rx and tx limits)';
  return [
    { model: 'tcfilter', extra: [], label: '' },
    { model: 'tcfilter', extra: ['--queues', '2'], label: '--queues 2' },
    { model: 'macvtap', extra: [], label: '' },
    { model: 'none', extra: [], label: '' },
    { model: 'tcfilter', extra: ['--config', rateLimited], label: limits },
    {
      model: 'tcfilter',
      extra: ['--config', rateLimited],
      shape: withoutTransmitQueue,
      label: `${limits}, pod veths with txqueuelen 0 (as CNI makes them)`,
    },
    { model: 'macvtap', extra: ['--config', rateLimited], label: limits },
    {
      model: 'macvtap',
      extra: [],
      shape: addPodLinkAttributes,
      label: '(via inet6, pref, address metric and lifetime, neighbour protocol and router)',
    },
    { model: 'macvtap', extra: [], shape: routeSubnetViaGateway, label: '(ptp: the subnet via the gateway)' },
    { model: 'tcfilter', extra: [], shape: addHostileLinks, label: '(link names with ; | $ quotes)' },
    { model: 'tcfilter', extra: ['--config', rateLimited], shape: addPodMacvtap, label: `${limits}, a pod macvtap` },
    { model: 'macvtap', extra: ['--config', rateLimited], shape: addPodMacvtap, label: `${limits}, a pod macvtap` },
    { model: 'macvtap', extra: [], shape: addHostileLinks, label: '(link names with ; | $ quotes)' },
  ];
}
