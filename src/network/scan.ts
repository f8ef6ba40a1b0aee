/**
 * Reads a pod namespace into NetworkInfo per interface (loopback skipped), with one batched request,
 * and decides which of them become endpoints: as Kata, a link without any address is left alone
 * (the kernel's fallback tunnels tunl0/sit0/gre0 appear in every namespace and cannot be deleted;
 * sidecars leave address-less bridges and ifbs), unless the caller names it.
 */
import { onAbort } from '../abort-listeners.js';
import { optionsArgument, signalOption, stringOption } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { AddressFamily } from '../netlink/codec/constants.js';
import { HardwareType, InterfaceFlag } from '../netlink/codec/link/message.js';
import { RouteScope, RouteTable } from '../netlink/codec/route.js';
import { type NamespaceSnapshot, type NetlinkHandle, SNAPSHOT_PARTS } from '../netlink/handle.js';
import { openNetworkNamespace } from '../netns/namespace-identity.js';
import { type CreateEndpointOptions, classifyInterface, loopbackRefused } from './endpoint/create-endpoint.js';
import { isVcnetDevice } from './link-name.js';
import type { EndpointType, NetworkInfo } from './network-info.js';
import { VCNET_LINK_GROUP } from './plan/plan-attach.js';

/**
 * What `scanNamespace` answers: the pod's links (loopback left out) with their addresses, routes and
 * neighbours, and the raw snapshot of the namespace.
 */
export interface NamespaceScan {
  interfaces: NetworkInfo[];
  snapshot: NamespaceSnapshot;
}

function isLoopback(info: Pick<NetworkInfo, 'link'>): boolean {
  return info.link.type === HardwareType.LOOPBACK || (info.link.flags & InterfaceFlag.LOOPBACK) !== 0;
}

/** The names of the namespace's loopback links (interfacesOf leaves them out): lo, in practice. */
export function loopbackNames(snapshot: NamespaceSnapshot): string[] {
  return snapshot.links.filter((link) => isLoopback({ link })).map((link) => link.name);
}

function groupByIndex<T>(items: T[], indexOf: (item: T) => number | undefined): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const index = indexOf(item);
    if (index === undefined) continue;
    const group = groups.get(index);
    if (group) group.push(item);
    else groups.set(index, [item]);
  }
  return groups;
}

export function interfacesOf(snapshot: NamespaceSnapshot): NetworkInfo[] {
  const addresses = groupByIndex(snapshot.addresses, (address) => address.index);
  // The guest gets the main table, as Kata reads it.
  const routes = groupByIndex(snapshot.routes, (route) =>
    route.table === RouteTable.MAIN ? route.outputIndex : undefined,
  );
  const neighbours = groupByIndex(snapshot.neighbours, (neighbour) => neighbour.index);
  return snapshot.links
    .map((link) => ({
      link,
      addresses: addresses.get(link.index) ?? [],
      routes: routes.get(link.index) ?? [],
      neighbours: neighbours.get(link.index) ?? [],
    }))
    .filter((info) => !isLoopback(info))
    .sort((a, b) => a.link.index - b.link.index);
}

/** Options of `scanNamespace`: a signal to stop it. */
export interface ScanOptions {
  /**
   * Stops the scan: it rejects with the signal's reason (a plain `abort()`: an AbortError). Checked
   * before anything is opened and between the dumps; a scan by path also closes its socket at once,
   * cutting the dump under way. A handle the caller gave stays open and usable (the dump under way
   * is read to its end first).
   */
  signal?: AbortSignal;
}

/** Scans a namespace: through an open handle, or by its path (opened and closed here). */
export async function scanNamespace(
  namespace: NetlinkHandle | string,
  options: ScanOptions = {},
): Promise<NamespaceScan> {
  // From plain JavaScript anything may come: a number would fail as "namespace.snapshot is not a function".
  if (typeof namespace !== 'string' && typeof (namespace as Partial<NetlinkHandle> | null)?.snapshot !== 'function') {
    throw new InvalidInputError('namespace', namespace, 'a network namespace path or an open NetlinkHandle');
  }
  if (namespace === '') throw new InvalidInputError('namespace', namespace, 'a network namespace path');
  options = optionsArgument(options, 'options', ['signal']);
  const signal = signalOption(options.signal);
  signal?.throwIfAborted();
  if (typeof namespace === 'string') {
    // Opened as attach opens it: a path that is no network namespace is a NamespacePathError naming
    // it (VCNET_NETNS_INVALID, with a hint), and a FIFO is refused instead of blocking the open.
    const opened = openNetworkNamespace(namespace, 'namespace');
    try {
      // On the socket the namespace's cookie was read on: the scan's one socket there.
      const handle = opened.netlinkHandle(namespace);
      // The socket is scan's own: an abort closes it at once, which fails the dump under way.
      // One listener per signal for all calls (abort-listeners.ts): a daemon's one signal on many scans.
      const stopWaiting = signal ? onAbort(signal, () => void handle.close()) : undefined;
      try {
        return await scanNamespace(handle, options);
      } catch (error) {
        // The closed socket's NetlinkClosedError is the abort's doing: the reason is what is thrown.
        signal?.throwIfAborted();
        throw error;
      } finally {
        stopWaiting?.();
        await handle.close();
      }
    } finally {
      opened.close();
    }
  }
  // With a signal, the handle dumps one part at a time and looks at the signal between them.
  const snapshot = await namespace.snapshot(SNAPSHOT_PARTS, { signal });
  return { interfaces: interfacesOf(snapshot), snapshot };
}

/**
 * Whether a link has an address of its own. Unlike Kata (K§9.29), the IPv6 link-local address the
 * kernel gives every link that is up does not count: it does not make a link configured.
 */
export function hasConfiguredAddress(info: NetworkInfo): boolean {
  return info.addresses.some(
    (address) => !(address.family === AddressFamily.INET6 && address.scope === RouteScope.LINK),
  );
}

export interface SkippedInterface {
  info: NetworkInfo;
  reason: string;
}

const NO_ADDRESS_REASON = 'no address';
/** Why scan shows one of vcnet's own devices (a sandbox's tap, ifb or macvtap) as no pod interface. */
const VCNET_DEVICE_REASON = `a VM's device, not a pod interface (named tap<N>_kata or ifb<N>_kata as vcnet and Kata name theirs, or in vcnet's link group ${VCNET_LINK_GROUP})`;

/**
 * The fallback tunnel devices the kernel makes in every namespace once their module is loaded (ipip's
 * tunl0 on every Calico node, gre0, sit0, …): by name, with the kind and ARPHRD type the kernel
 * gives each. Never a pod interface, and there on every attach: said at debug level, not as a warning.
 */
const KERNEL_FALLBACK_TUNNELS: ReadonlyMap<string, { kind: string; type: number }> = new Map([
  ['tunl0', { kind: 'ipip', type: 768 }],
  ['gre0', { kind: 'gre', type: 778 }],
  ['gretap0', { kind: 'gretap', type: 1 }],
  ['erspan0', { kind: 'erspan', type: 1 }],
  ['ip_vti0', { kind: 'vti', type: 768 }],
  ['ip6_vti0', { kind: 'vti6', type: 769 }],
  ['sit0', { kind: 'sit', type: 776 }],
  ['ip6tnl0', { kind: 'ip6tnl', type: 769 }],
  ['ip6gre0', { kind: 'ip6gre', type: 823 }],
]);

/** Why attach leaves a kernel fallback tunnel alone (SkippedInterface.reason); logged at debug level. */
export const KERNEL_FALLBACK_TUNNEL_REASON =
  "the kernel's fallback tunnel device (made in every namespace when its module is loaded), not a pod interface";

/**
 * Whether a link is one of the kernel's fallback tunnels as the kernel makes it: its name, kind and
 * hardware type, no lower link, and no address of its own (one given an address is someone's tunnel).
 */
export function isKernelFallbackTunnel(info: NetworkInfo): boolean {
  const shape = KERNEL_FALLBACK_TUNNELS.get(info.link.name);
  return (
    shape !== undefined &&
    info.link.kind === shape.kind &&
    info.link.type === shape.type &&
    !info.link.parentIndex &&
    !hasConfiguredAddress(info)
  );
}

/**
 * Splits scanned interfaces into those that become endpoints and those left alone (with why).
 * `named` are links the caller asked for by name (add-iface, attach --interface): never skipped.
 */
export function selectEndpointInterfaces(
  interfaces: readonly NetworkInfo[],
  named: ReadonlySet<string> = new Set(),
): { selected: NetworkInfo[]; skipped: SkippedInterface[] } {
  const selected: NetworkInfo[] = [];
  const skipped: SkippedInterface[] = [];
  for (const info of interfaces) {
    if (named.has(info.link.name) || hasConfiguredAddress(info)) selected.push(info);
    else
      skipped.push({ info, reason: isKernelFallbackTunnel(info) ? KERNEL_FALLBACK_TUNNEL_REASON : NO_ADDRESS_REASON });
  }
  return { selected, skipped };
}

/**
 * Refuses a named link (attach --interface, NetworkConfig.namedInterfaces) the namespace does not
 * have, before anything is made: otherwise the VM silently comes up one NIC short.
 */
export function refuseUnknownNamedInterfaces(snapshot: NamespaceSnapshot, named: readonly string[]): void {
  const links = interfacesOf(snapshot).map((info) => info.link.name);
  const missing = named.find((name) => !links.includes(name));
  if (missing === undefined) return;
  if (loopbackNames(snapshot).includes(missing)) throw loopbackRefused(missing);
  throw new InvalidInputError(
    'namedInterfaces',
    missing,
    links.length > 0 ? `a link of the namespace: ${links.join(', ')}` : 'a link of the namespace (it has none but lo)',
  );
}

/**
 * `vcnet watch`: the links one change set should attach. New links, and links attach skipped that
 * have an address now; links without one wait (a later change that gives them one attaches them).
 * A link in vcnet's link group is never one: vcnet makes its taps there, and anyone else's link put
 * there (a tenant's tun) is not a pod interface.
 */
export function linksToAttach(
  change: { addedInterfaces: readonly NetworkInfo[]; changedInterfaces: readonly NetworkInfo[] },
  isAttached: (name: string) => boolean,
  named: ReadonlySet<string> = new Set(),
): { selected: NetworkInfo[]; skipped: SkippedInterface[] } {
  const candidates = [...change.addedInterfaces, ...change.changedInterfaces].filter(
    (info) => !isLoopback(info) && !isAttached(info.link.name) && info.link.group !== VCNET_LINK_GROUP,
  );
  return selectEndpointInterfaces(candidates, named);
}

/**
 * The one line said about a skipped link: what it is, why, and how to attach it anyway; for a link
 * vcnet cannot connect (a bridge, a vxlan), why naming it would not help instead.
 */
export function skippedNotice(
  skipped: SkippedInterface,
  options: Pick<CreateEndpointOptions, 'vhostUserStorePath'> = {},
): string {
  const { link } = skipped.info;
  const what = `skipped ${link.name} (kind ${link.kind ?? 'none'}): ${skipped.reason}`;
  try {
    classifyInterface(skipped.info, options);
  } catch (error) {
    return `${what}; naming it would not attach it either: ${(error as Error).message}`;
  }
  return `${what}; name it with --interface ${link.name} (or add-iface) to attach it anyway`;
}

/** One link of a scan as `vcnet scan` shows it: what attach would make of it, and why not. */
export interface ScannedInterface {
  info: NetworkInfo;
  /** The endpoint type it would become, or why it cannot become one. */
  endpointType?: EndpointType;
  unsupported?: { code: string; message: string };
  /** Why attach leaves it alone (it has no address and was not named). */
  skipped?: string;
}

const SCAN_ACCEPTED =
  'what scanNamespace returns: an object whose interfaces are {link, addresses, routes, neighbours}';

/** A JavaScript caller may pass anything: refuse what is no scan before reading its links. */
function checkScanArgument(scan: unknown): asserts scan is NamespaceScan {
  const interfaces = (scan as { interfaces?: unknown } | null | undefined)?.interfaces;
  if (typeof scan !== 'object' || scan === null || !Array.isArray(interfaces)) {
    throw new InvalidInputError('scan', scan, SCAN_ACCEPTED);
  }
  interfaces.forEach((info: unknown, index) => {
    const entry = info as Partial<Record<keyof NetworkInfo, unknown>> | null;
    const link = entry?.link as { name?: unknown } | null | undefined;
    const listsGiven = (['addresses', 'routes', 'neighbours'] as const).every((key) => Array.isArray(entry?.[key]));
    if (
      typeof entry !== 'object' ||
      entry === null ||
      typeof link !== 'object' ||
      link === null ||
      typeof link.name !== 'string' ||
      !listsGiven
    ) {
      throw new InvalidInputError(`scan.interfaces[${index}]`, info, SCAN_ACCEPTED);
    }
  });
}

/**
 * Each link of `scan` (scanNamespace's interfaces) with the endpoint type attach would give it, why
 * it cannot be one, or why attach skips it: what `vcnet scan` prints.
 */
export function classifyScan(
  scan: NamespaceScan,
  options: Pick<CreateEndpointOptions, 'vhostUserStorePath'> & { named?: ReadonlySet<string> } = {},
): ScannedInterface[] {
  checkScanArgument(scan);
  options = optionsArgument(options, 'options', ['vhostUserStorePath', 'named']);
  stringOption(options.vhostUserStorePath, 'options.vhostUserStorePath', 'a directory path');
  if (options.named !== undefined && !(options.named instanceof Set)) {
    throw new InvalidInputError('options.named', options.named, 'a Set of link names');
  }
  const { skipped } = selectEndpointInterfaces(scan.interfaces, options.named);
  const skipReasons = new Map(skipped.map((entry) => [entry.info, entry.reason]));
  return scan.interfaces.map((info): ScannedInterface => {
    // Not "no address": it is a VM's side of some attach, and attach would refuse it even if named.
    if (isVcnetDevice(info.link)) return { info, skipped: VCNET_DEVICE_REASON };
    const reason = skipReasons.get(info);
    const skippedField = reason ? { skipped: reason } : {};
    try {
      return { info, endpointType: classifyInterface(info, options), ...skippedField };
    } catch (error) {
      const failure = error as { code?: string; message: string };
      return {
        info,
        unsupported: { code: failure.code ?? 'VCNET_UNSUPPORTED_INTERFACE', message: failure.message },
        ...skippedField,
      };
    }
  });
}

/** The names of the interfaces that would become physical endpoints (those that classify at all). */
export function physicalLinksOf(interfaces: readonly NetworkInfo[]): string[] {
  return interfaces
    .filter((info) => {
      try {
        return classifyInterface(info) === 'physical';
      } catch {
        return false;
      }
    })
    .map((info) => info.link.name);
}
