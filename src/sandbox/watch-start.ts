/**
 * Where a watch starts from: the sandbox's record, not the namespace as the watch finds it. What
 * changed while no watch ran (a pod link deleted by CNI DEL, made again under its name, a route added,
 * an MTU changed, vcnet's tap deleted) then comes as the watch's first change, and is applied as if
 * it had happened while watching. Pure: unit tests give it records and namespaces.
 */
import type { EndpointState } from '../network/endpoint/endpoint.js';
import { guestSignature } from '../network/namespace-watcher.js';
import type { NetworkInfo } from '../network/network-info.js';

/**
 * The ifindex a start view gives a recorded pod link that the link there now (same ifindex) is not:
 * another kind, or another MAC than attach left it. No link has ifindex 0, so the watcher's diff
 * takes the recorded one as removed and the link there as added: the endpoint is removed and the
 * link attached as the new link it is.
 */
export const REPLACED_LINK_INDEX = 0;

export interface WatchStartView {
  /** The interfaces as last applied: those there now, each attached endpoint's pod link as recorded. */
  interfaces: NetworkInfo[];
  /** vcnet's devices the record's endpoints use (tap, macvtap), by name and ifindex. */
  vcnetLinks: Array<{ name: string; index: number }>;
}

/**
 * The view a watch starts from (NamespaceWatcherOptions.startView): `present` (the namespace now)
 * with each recorded endpoint's pod link as the guest was last told it. Left out: physical endpoints
 * (their link leaves the namespace for VFIO while attached) and unfinished attaches (gc's, or undone
 * by the watch before this). A recorded link that is gone is reported removed, one made again
 * (another ifindex, kind or MAC) removed and added, one whose addresses, routes, MTU, flags or
 * permanent neighbours changed as changed; a recorded tap or macvtap that is gone is a lost device.
 */
export function watchStartView(present: readonly NetworkInfo[], endpoints: readonly EndpointState[]): WatchStartView {
  const byName = new Map(present.map((info) => [info.link.name, info]));
  const vcnetLinks: Array<{ name: string; index: number }> = [];
  for (const endpoint of endpoints) {
    const plumbing = endpoint.plumbing;
    if (endpoint.type === 'physical' || plumbing?.model === 'pending') continue;
    if ((plumbing?.model === 'tcfilter' || plumbing?.model === 'macvtap') && plumbing.tapIndex > 0) {
      vcnetLinks.push({ name: plumbing.tapName, index: plumbing.tapIndex });
    }
    const recorded = endpoint.properties;
    const now = byName.get(recorded.link.name);
    byName.set(recorded.link.name, now ? startViewOf(endpoint, now) : recorded);
  }
  return { interfaces: [...byName.values()], vcnetLinks };
}

/** A recorded endpoint's pod link in the start view, `now` being the link of that name there now. */
function startViewOf(endpoint: EndpointState, now: NetworkInfo): NetworkInfo {
  const recorded = endpoint.properties;
  // Another ifindex: the diff takes it as removed and added by itself.
  if (now.link.index !== recorded.link.index) return recorded;
  if (!isSameDevice(endpoint, now)) return { ...recorded, link: { ...recorded.link, index: REPLACED_LINK_INDEX } };
  // The link there now as the watch would apply it: when that tells the guest nothing new (a pod MTU
  // above the guest NIC's, a macvtap's pod link without the addresses the guest took), no change.
  const applied = mergeChange(
    recorded,
    now,
    endpoint.deviceMtu ?? recorded.link.mtu,
    endpoint.plumbing?.model === 'macvtap',
  );
  return guestSignature(applied) === guestSignature(recorded) ? now : recorded;
}

/**
 * Whether `now` (the recorded ifindex) is the link the endpoint was made from: the same kind, and
 * the MAC attach left it with (the macvtap model gives the pod link a private one, recorded in its
 * steps). A link can only change kind by being made again; a MAC other than that one means the
 * guest NIC, made with the recorded MAC, no longer gets the pod's traffic.
 */
function isSameDevice(endpoint: EndpointState, now: NetworkInfo): boolean {
  const recorded = endpoint.properties.link;
  if (recorded.kind !== undefined && now.link.kind !== undefined && recorded.kind !== now.link.kind) return false;
  const expected = podLinkMacAsLeft(endpoint);
  return expected === undefined || now.link.address === undefined || expected === now.link.address.toLowerCase();
}

/** The pod link's MAC as attach left it (lower case): as it found it, or what its own steps set. */
function podLinkMacAsLeft(endpoint: EndpointState): string | undefined {
  const link = endpoint.properties.link;
  let address = link.address?.toLowerCase();
  for (const step of endpoint.plumbing?.steps ?? []) {
    if (step.step !== 'change-link' || !('address' in step.before)) continue;
    if (step.index !== undefined ? step.index !== link.index : step.link !== link.name) continue;
    // A record without `set` (older vcnet) does not say what the MAC became: not compared.
    address = step.set?.address?.toLowerCase();
  }
  return address;
}

/**
 * The pod interface's new view, but its MAC as attach saw it (the macvtap model moves the pod
 * interface to a private MAC, and the guest keeps the original), and its MTU no larger than the
 * guest NIC's maximum, fixed when it was plugged (host_mtu). Below that the MTU follows the pod
 * link both ways: capping by the last recorded MTU kept a lowered MTU lowered for good.
 * With `movedIntoGuest` (macvtap) the addresses, routes and static neighbours are the recorded
 * ones: attach took them off the pod link and gave them to the guest, so the pod link's own lists
 * (empty) say nothing about the guest's.
 */
export function mergeChange(
  previous: NetworkInfo,
  next: NetworkInfo,
  deviceMtu: number,
  movedIntoGuest: boolean,
): NetworkInfo {
  return {
    ...next,
    ...(movedIntoGuest
      ? { addresses: previous.addresses, routes: previous.routes, neighbours: previous.neighbours }
      : {}),
    link: {
      ...next.link,
      ...(previous.link.address ? { address: previous.link.address } : {}),
      mtu: deviceMtu > 0 ? Math.min(deviceMtu, next.link.mtu) : next.link.mtu,
    },
  };
}
