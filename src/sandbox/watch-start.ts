/**
 * Where a watch starts from: the sandbox's record, not the namespace as the watch finds it. What
 * changed while no watch ran (a pod link deleted by CNI DEL, made again under its name, renamed, a
 * route added, an MTU changed, vcnet's tap deleted) then comes as the watch's first change, and is
 * applied as if it had happened while watching. A pod link is its ifindex and kind, not its MAC: a
 * MAC changed on the same link is not followed, at start as while watching (the guest NIC keeps its
 * own), but a tcfilter endpoint's is said (its guest NIC has the MAC the pod link had). Pure: unit tests give it
 * records and namespaces. tc objects of the record deleted while no watch ran are not compared here:
 * the watch's first change always says tc may have changed (NamespaceWatcherOptions.trafficControl),
 * and sandbox-watch.ts checks them then, as after any tc event.
 */
import type { EndpointState } from '../network/endpoint/endpoint.js';
import { isUnfinished } from '../network/model/plumbing-context.js';
import { guestSignature } from '../network/namespace-watcher.js';
import type { NetworkInfo } from '../network/network-info.js';

/**
 * The ifindex a start view gives a recorded pod link that the link there now (same ifindex) is not:
 * another kind. No link has ifindex 0, so the watcher's diff takes the recorded one as removed and
 * the link there as added: the endpoint is removed and the link attached as the new link it is.
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
 * (another ifindex or kind) removed and added, one renamed (its ifindex and kind under another name)
 * removed under the recorded name and added under the new one, as a rename while watching is; one
 * whose addresses, routes, MTU, flags or permanent neighbours changed as changed; a recorded tap or
 * macvtap that is gone is a lost device.
 */
export function watchStartView(present: readonly NetworkInfo[], endpoints: readonly EndpointState[]): WatchStartView {
  const byName = new Map(present.map((info) => [info.link.name, info]));
  const byIndex = new Map(present.map((info) => [info.link.index, info]));
  const vcnetLinks: Array<{ name: string; index: number }> = [];
  for (const endpoint of endpoints) {
    const plumbing = endpoint.plumbing;
    if (endpoint.type === 'physical' || isUnfinished(plumbing)) continue;
    if ((plumbing?.model === 'tcfilter' || plumbing?.model === 'macvtap') && plumbing.tapIndex > 0) {
      vcnetLinks.push({ name: plumbing.tapName, index: plumbing.tapIndex });
    }
    const recorded = endpoint.properties;
    // The recorded link renamed while no watch ran: left out of the view under its new name, the
    // watcher's diff takes it as added there (and the recorded name as removed), as it does a rename
    // while it watches. Kept in the view, it would be a link there at start with an address, and a
    // watch never attaches such a link: the endpoint would be removed and the link lost for good.
    const renamed = byIndex.get(recorded.link.index);
    if (renamed && renamed.link.name !== recorded.link.name && isSameKind(recorded, renamed)) {
      if (byName.get(renamed.link.name) === renamed) byName.delete(renamed.link.name);
    }
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
  // Another kind: made again. The MAC is not compared: a MAC changed on the same link is not followed
  // by a running watch (mergeChange keeps the recorded one), so not at start either; the macvtap
  // model's private MAC on the pod link needs no exception.
  if (!isSameKind(recorded, now)) return { ...recorded, link: { ...recorded.link, index: REPLACED_LINK_INDEX } };
  // The link there now as the watch would apply it: when that tells the guest nothing new (a pod MTU
  // above the guest NIC's, a macvtap's pod link without the addresses the guest took), no change.
  const applied = mergeChange(
    recorded,
    now,
    endpoint.deviceMtu ?? recorded.link.mtu,
    endpoint.plumbing?.model === 'macvtap',
  );
  if (guestSignature(applied) !== guestSignature(recorded)) return recorded;
  // A tcfilter guest NIC has the MAC the pod link had at attach: one changed since is the first
  // change (said, not followed). The macvtap model's pod link has a private MAC of vcnet's, not the recorded one.
  return endpoint.plumbing?.model === 'tcfilter'
    ? { ...now, link: { ...now.link, address: recorded.link.address } }
    : now;
}

/** Whether two views of one ifindex are of the same kind of link (either kind unknown: taken as the same). */
function isSameKind(recorded: NetworkInfo, now: NetworkInfo): boolean {
  return recorded.link.kind === undefined || now.link.kind === undefined || recorded.link.kind === now.link.kind;
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
