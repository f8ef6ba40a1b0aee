/**
 * A plan as the `ip` and `tc` commands that make the same changes (`vcnet attach --dry-run`). They
 * are meant to run inside the pod namespace, one per line, e.g.
 *
 *   vcnet attach --dry-run ... | ip netns exec POD sh -e        (a named namespace)
 *   vcnet attach --dry-run ... | nsenter --net=PATH sh -e       (any namespace path)
 *
 * so they carry no `-n NAME` and work for /proc/PID/ns/net paths too; a command a message quotes for
 * a host shell names its namespace (CommandOptions.namespacePath). Links are named, never indexed
 * (a new macvtap is made at the index `macvtapIndex` gives, as attach picks one), and every name the pod's owner picked is quoted for the shell (src/shell-word.ts).
 */
import { AddressFlag } from '../../netlink/codec/address.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import type { Ipv6AddressGeneration } from '../../netlink/codec/link.js';
import { NeighbourFlag, NeighbourState } from '../../netlink/codec/neighbour.js';
import { formatHandle } from '../../netlink/codec/tc/message.js';
import { htbDefaultBurstBytes } from '../../netlink/codec/tc/qdisc/htb.js';
import { commandsIn, shellWord, sysctlCommandIn } from '../../shell-word.js';
import { routeArguments } from './route-command.js';
import type { Change, LinkRef, NeighbourRecord, Plan } from './types.js';

/** The values of the addr_gen_mode sysctl (IN6_ADDR_GEN_MODE_*), by mode. */
export const ADDRESS_GENERATION_SYSCTL: Record<Ipv6AddressGeneration, number> = {
  eui64: 0,
  none: 1,
  'stable-privacy': 2,
  random: 3,
};

function dev(link: LinkRef): string {
  return `dev ${shellWord(link.name)}`;
}

function familyFlag(address: string | undefined, family?: number): string {
  return family === AddressFamily.INET6 || address?.includes(':') ? '-6 ' : '';
}

export interface CommandOptions {
  /**
   * The ifindex a macvtap is made at (`index N`). Attach makes each at a random high index so its
   * host-wide /dev/tap<index> is its own; a pasted command without one would get the namespace's
   * next small index, whose node another namespace's macvtap may already have.
   */
  macvtapIndex?: () => number;
  /**
   * The namespace the command is to run in when pasted into a host shell (src/shell-word.ts
   * commandIn: `ip -n NAME` where iproute2 reaches it by that name, else `nsenter --net=PATH tc`): a
   * bare `ip` or `tc` there acts on a host link of the pod link's name. Undefined: a bare command,
   * for a shell already inside the namespace (a dry run is piped to one).
   */
  namespacePath?: string | undefined;
}

/** The `ip`/`tc` command that makes one change. */
export function commandOf(change: Change, options: CommandOptions = {}): string {
  const inNamespace = commandsIn(options.namespacePath);
  const ip = inNamespace('ip');
  const tc = inNamespace('tc');
  switch (change.op) {
    case 'create-tap':
      return `${ip} tuntap add ${dev(change.link)} mode tap vnet_hdr${change.multiQueue ? ' multi_queue' : ''}${
        change.owner !== undefined ? ` user ${change.owner}` : ''
      }${change.group !== undefined ? ` group ${change.group}` : ''}`;
    case 'create-link': {
      const parts = [`${ip} link add`];
      if (change.parent) parts.push(`link ${shellWord(change.parent.name)}`);
      parts.push(`name ${shellWord(change.link.name)}`);
      if (change.address) parts.push(`address ${change.address}`);
      if (change.mtu !== undefined) parts.push(`mtu ${change.mtu}`);
      if (change.txQueueLength !== undefined) parts.push(`txqueuelen ${change.txQueueLength}`);
      if (change.group !== undefined) parts.push(`group ${change.group}`);
      if (change.allMulticast) parts.push('allmulticast on');
      if (change.kind === 'macvtap' && options.macvtapIndex) parts.push(`index ${options.macvtapIndex()}`);
      parts.push(change.kind === 'macvtap' ? 'type macvtap mode bridge' : 'type ifb');
      return parts.join(' ');
    }
    case 'delete-link':
      return `${ip} link del ${dev(change.link)}`;
    case 'delete-link-group':
      return `${ip} link del group ${change.group}`;
    case 'set-link': {
      const parts = [`${ip} link set ${dev(change.link)}`];
      if (change.set.address !== undefined) parts.push(`address ${change.set.address}`);
      if (change.set.mtu !== undefined) parts.push(`mtu ${change.set.mtu}`);
      if (change.set.group !== undefined) parts.push(`group ${change.set.group}`);
      if (change.set.txQueueLength !== undefined) parts.push(`txqueuelen ${change.set.txQueueLength}`);
      // iproute2 spells the stable-privacy mode by its sysctl (stable_secret).
      if (change.set.ipv6AddressGeneration !== undefined)
        parts.push(`addrgenmode ${change.set.ipv6AddressGeneration.replace('stable-privacy', 'stable_secret')}`);
      if (change.set.up !== undefined) parts.push(change.set.up ? 'up' : 'down');
      return parts.join(' ');
    }
    case 'set-address-generation':
      // The sysctl, not `ip link set addrgenmode`: only a write of it makes the link-local address.
      // In a namespace by a program run there (sysctlCommandIn): an `echo >` redirect is opened by the
      // pasting shell, in the host's /proc/sys/net.
      if (options.namespacePath !== undefined)
        return sysctlCommandIn(
          options.namespacePath,
          `net/ipv6/conf/${change.link.name}/addr_gen_mode`,
          ADDRESS_GENERATION_SYSCTL[change.mode],
        );
      return `echo ${ADDRESS_GENERATION_SYSCTL[change.mode]} > ${shellWord(`/proc/sys/net/ipv6/conf/${change.link.name}/addr_gen_mode`)}`;
    case 'add-qdisc':
      return change.kind === 'ingress'
        ? `${tc} qdisc add ${dev(change.link)} ingress`
        : `${tc} qdisc add ${dev(change.link)} ${formatHandle(change.parent)} handle ${formatHandle(change.handle)} htb default ${(change.defaultClass ?? 0).toString(16)}`;
    case 'delete-qdisc':
      return change.kind === 'ingress'
        ? `${tc} qdisc del ${dev(change.link)} ingress`
        : `${tc} qdisc del ${dev(change.link)} ${formatHandle(change.parent)} handle ${formatHandle(change.handle)}`;
    case 'add-class': {
      const burst = htbDefaultBurstBytes(Math.floor(change.rateBitsPerSecond / 8));
      return `${tc} class ${change.change ? 'change' : 'add'} ${dev(change.link)} parent ${formatHandle(change.parent)} classid ${formatHandle(change.handle)} htb rate ${change.rateBitsPerSecond}bit ceil ${change.rateBitsPerSecond}bit burst ${burst} cburst ${burst}`;
    }
    case 'add-filter':
      return `${tc} filter add ${dev(change.link)} parent ${formatHandle(change.parent)} protocol ${protocolText(change.protocol)} prio ${change.priority} u32 match u32 0 0 action mirred egress redirect ${dev(change.redirectTo)}`;
    case 'delete-filter':
      return `${tc} filter del ${dev(change.link)} parent ${formatHandle(change.parent)} protocol ${protocolText(change.protocol)} prio ${change.priority}${change.handle !== undefined ? ` handle ${formatU32Handle(change.handle)} ${change.kind}` : ''}`;
    case 'change-address':
      return commandOf({ ...change, op: 'add-address' }, options).replace(
        `${ip} address add `,
        `${ip} address change `,
      );
    case 'add-address':
    case 'delete-address': {
      // The protocol (IFA_PROTO, kernel_ll) is left out: iproute2 takes `proto` only since 6.3.
      const { address } = change;
      const verb = change.op === 'add-address' ? 'add' : 'del';
      const extra = [
        address.peer ? `peer ${address.peer}` : '',
        address.broadcast ? `broadcast ${address.broadcast}` : '',
        change.op === 'add-address' && address.scope !== undefined ? `scope ${address.scope}` : '',
        address.label ? `label ${shellWord(address.label)}` : '',
        change.op === 'add-address' && address.routePriority !== undefined ? `metric ${address.routePriority}` : '',
        change.op === 'add-address' && address.validLifetime !== undefined ? `valid_lft ${address.validLifetime}` : '',
        change.op === 'add-address' && address.preferredLifetime !== undefined
          ? `preferred_lft ${address.preferredLifetime}`
          : '',
        ...(change.op === 'add-address' ? addressFlagWords(address.flags ?? 0) : []),
      ].filter(Boolean);
      return [`${ip} address ${verb} ${address.address}/${address.prefixLength}`, ...extra, dev(change.link)].join(' ');
    }
    case 'add-route':
    case 'delete-route': {
      const verb = change.op === 'delete-route' ? 'del' : change.replace ? 'replace' : 'add';
      return `${ip} ${familyFlag(change.route.destination ?? change.route.gateway ?? change.route.nextHops?.[0]?.gateway, change.route.family)}route ${verb} ${routeArguments(change.route, change.link)}`;
    }
    case 'add-neighbour': {
      const { neighbour } = change;
      const extra = [
        (neighbour.flags ?? 0) & NeighbourFlag.ROUTER ? 'router' : '',
        neighbour.protocol !== undefined ? `protocol ${neighbour.protocol}` : '',
      ]
        .filter(Boolean)
        .map((part) => ` ${part}`)
        .join('');
      if (isProxy(neighbour)) return `${ip} neigh replace proxy ${neighbour.destination} ${dev(change.link)}${extra}`;
      return `${ip} neigh replace ${neighbour.destination}${neighbour.linkLayerAddress ? ` lladdr ${neighbour.linkLayerAddress}` : ''} nud ${nudWord(neighbour.state)} ${dev(change.link)}${extra}`;
    }
    case 'delete-neighbour':
      return `${ip} neigh del ${isProxy(change.neighbour) ? 'proxy ' : ''}${change.neighbour.destination} ${dev(change.link)}`;
  }
}

function nudWord(state: number | undefined): string {
  if (state === NeighbourState.NOARP) return 'noarp';
  return state === NeighbourState.PERMANENT ? 'permanent' : 'reachable';
}

function isProxy(neighbour: NeighbourRecord): boolean {
  return ((neighbour.flags ?? 0) & NeighbourFlag.PROXY) !== 0;
}

function protocolText(protocol: number): string {
  return protocol === 0x0003 ? 'all' : `0x${protocol.toString(16).padStart(4, '0')}`;
}

/** Every change of the plan as a command, in order. */
export function commandsOf(plan: Pick<Plan, 'steps'>, options: CommandOptions = {}): string[] {
  return plan.steps.map((step) => commandOf(step.change, options));
}

/** The address flags a request sets, as `ip address add` spells them (the kernel keeps only these). */
function addressFlagWords(flags: number): string[] {
  const words: Array<[number, string]> = [
    [AddressFlag.HOMEADDRESS, 'home'],
    [AddressFlag.MANAGETEMPADDR, 'mngtmpaddr'],
    [AddressFlag.NODAD, 'nodad'],
    [AddressFlag.OPTIMISTIC, 'optimistic'],
    [AddressFlag.NOPREFIXROUTE, 'noprefixroute'],
  ];
  return words.filter(([flag]) => (flags & flag) !== 0).map(([, word]) => word);
}

/** A u32 node's handle as tc writes it: hash table, bucket and node in hex (800::801). */
export function formatU32Handle(handle: number): string {
  const table = (handle >>> 20).toString(16);
  const bucket = ((handle >>> 12) & 0xff).toString(16);
  const node = (handle & 0xfff).toString(16);
  return `${table}:${bucket === '0' ? '' : bucket}:${node}`;
}
