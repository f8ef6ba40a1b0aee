/**
 * The record of what an attach changed in the pod namespace, step by step, so that detach can undo
 * exactly that and nothing else — from persisted state alone, after a crash too.
 *
 * Kata's detach deletes every u32 filter and ingress qdisc on the interface and leaves it down; vcnet
 * removes only the objects it created and puts back what it changed (MAC, MTU, up/down, addresses,
 * routes), in reverse order.
 */
import type { Address } from '../netlink/codec/address.js';
import { RouteFlag } from '../netlink/codec/constants.js';
import type { Link } from '../netlink/codec/link.js';
import type { Neighbour } from '../netlink/codec/neighbour.js';
import type { Route } from '../netlink/codec/route.js';
import type { NetlinkError } from '../netlink/errors.js';
import type { ChangeBatch, NetlinkHandle } from '../netlink/handle.js';
import { qdiscKey, qdiscsHoldingOthersFilters } from './foreign-filters.js';

/** Links vcnet creates carry this IFLA_GROUP, so a sandbox's links can be deleted in one request. */
export const VCNET_LINK_GROUP = 0x7663; // "vc"

export type PlumbingStep =
  | { step: 'create-link'; name: string; kind: string }
  | { step: 'add-qdisc'; link: string; handle: number; parent: number; kind: string }
  | { step: 'add-filter'; link: string; parent: number; priority: number; protocol: number; kind: string }
  | { step: 'change-link'; link: string; before: { address?: string; mtu?: number; up?: boolean; name?: string } }
  | { step: 'remove-addresses'; link: string; addresses: Address[] }
  | { step: 'remove-routes'; link: string; routes: Route[] }
  | { step: 'remove-neighbours'; link: string; neighbours: Neighbour[] };

/** Address flags a request may carry (nodad, optimistic, homeaddress, managetempaddr, noprefixroute). */
const REQUEST_ADDRESS_FLAGS = 0x2 | 0x4 | 0x10 | 0x100 | 0x200;

/** Errors that mean "already gone": undo is idempotent. */
const GONE = new Set(['ENOENT', 'ENODEV', 'ESRCH', 'EADDRNOTAVAIL']);
/** Errors that mean "already there" when putting things back. */
const PRESENT = new Set(['EEXIST']);

export interface UndoReport {
  undone: number;
  alreadyGone: number;
  failures: NetlinkError[];
}

/**
 * Undoes steps in reverse order in as few requests as possible. Objects that live on a link that is
 * itself being deleted are skipped (they go with it), and links of vcnet's group are deleted together
 * when the group holds nothing else (one RCU grace period instead of one per link).
 */
export async function undoPlumbing(
  handle: NetlinkHandle,
  steps: PlumbingStep[],
  knownLinks?: Link[],
): Promise<UndoReport> {
  const links = knownLinks ?? (await handle.links());
  const byName = new Map(links.map((link) => [link.name, link]));
  const deletedLinks = new Set(steps.filter((step) => step.step === 'create-link').map((step) => step.name));
  const report: UndoReport = { undone: 0, alreadyGone: 0, failures: [] };

  // Links to delete: by group when the group is exactly ours, one by one otherwise.
  const existingCreated = [...deletedLinks].filter((name) => byName.has(name));
  report.alreadyGone += deletedLinks.size - existingCreated.length;
  const groupMembers = links.filter((link) => link.group === VCNET_LINK_GROUP).map((link) => link.name);
  const deleteByGroup =
    existingCreated.length > 1 &&
    groupMembers.length === existingCreated.length &&
    groupMembers.every((name) => deletedLinks.has(name));

  // nodes (issue 12): a qdisc of ours that holds someone else's filter stays (foreign-filters.ts).
  const keptQdiscs = await qdiscsHoldingOthersFilters(handle, steps, byName, deletedLinks);

  const batch = handle.changes();
  const expectations: Array<'undo' | 'restore'> = [];
  const queue = (kind: 'undo' | 'restore', add: (b: ChangeBatch) => void): void => {
    add(batch);
    expectations.push(kind);
  };

  for (const step of [...steps].reverse()) {
    switch (step.step) {
      case 'create-link':
        break; // handled after the loop, together
      case 'add-qdisc': {
        const link = byName.get(step.link);
        if (deletedLinks.has(step.link) || keptQdiscs.has(qdiscKey(step.link, step.handle))) break;
        if (!link) {
          report.alreadyGone++;
          break;
        }
        queue('undo', (b) => b.deleteQdisc(link.index, step.handle, step.parent));
        break;
      }
      case 'add-filter': {
        const link = byName.get(step.link);
        if (deletedLinks.has(step.link)) break;
        // A filter inside a qdisc we also delete goes with the qdisc.
        const qdiscGoes = steps.some(
          (other) =>
            other.step === 'add-qdisc' &&
            other.link === step.link &&
            other.handle >>> 16 === step.parent >>> 16 &&
            !keptQdiscs.has(qdiscKey(other.link, other.handle)),
        );
        if (qdiscGoes) break;
        if (!link) {
          report.alreadyGone++;
          break;
        }
        queue('undo', (b) =>
          b.deleteFilter({
            index: link.index,
            parent: step.parent,
            priority: step.priority,
            protocol: step.protocol,
            kind: step.kind,
          }),
        );
        break;
      }
      case 'change-link': {
        const link = byName.get(step.link);
        if (!link) {
          report.alreadyGone++;
          break;
        }
        queue('restore', (b) => b.setLink(link.index, step.before, `restore link ${step.link}`));
        break;
      }
      case 'remove-addresses': {
        const link = byName.get(step.link);
        if (!link) {
          report.alreadyGone++;
          break;
        }
        for (const address of step.addresses) {
          queue('restore', (b) =>
            b.addAddress({
              index: link.index,
              address: address.address,
              prefixLength: address.prefixLength,
              scope: address.scope,
              flags: address.flags & REQUEST_ADDRESS_FLAGS,
              ...(address.peer ? { peer: address.peer } : {}),
              ...(address.broadcast ? { broadcast: address.broadcast } : {}),
              ...(address.label ? { label: address.label } : {}),
            }),
          );
        }
        break;
      }
      case 'remove-routes': {
        const link = byName.get(step.link);
        if (!link) {
          report.alreadyGone++;
          break;
        }
        for (const route of step.routes) {
          queue('restore', (b) => b.addRoute({ ...routeSpecOf(route), outputIndex: link.index }));
        }
        break;
      }
      case 'remove-neighbours': {
        const link = byName.get(step.link);
        if (!link) {
          report.alreadyGone++;
          break;
        }
        for (const neighbour of step.neighbours) {
          queue('restore', (b) =>
            b.addNeighbour(
              {
                index: link.index,
                destination: neighbour.destination,
                state: neighbour.state,
                flags: neighbour.flags,
                ...(neighbour.linkLayerAddress ? { linkLayerAddress: neighbour.linkLayerAddress } : {}),
              },
              true,
            ),
          );
        }
        break;
      }
    }
  }

  if (deleteByGroup) {
    queue('undo', (b) => b.deleteLinkGroup(VCNET_LINK_GROUP));
  } else {
    for (const name of existingCreated) {
      const link = byName.get(name)!;
      queue('undo', (b) => b.deleteLink(link.index, `delete link ${name}`));
    }
  }

  const outcomes = await batch.send();
  outcomes.forEach((outcome, position) => {
    if (outcome.ok) {
      report.undone +=
        position < expectations.length && deleteByGroup && position === outcomes.length - 1
          ? existingCreated.length
          : 1;
      return;
    }
    const tolerated = expectations[position] === 'restore' ? PRESENT : GONE;
    if (tolerated.has(outcome.error.errno) || GONE.has(outcome.error.errno)) report.alreadyGone++;
    else report.failures.push(outcome.error);
  });
  return report;
}

/** A kernel route as a request that recreates it. Kernel-made (proto kernel) routes come back with addresses. */
export function routeSpecOf(route: Route) {
  return {
    family: route.family,
    ...(route.destination ? { destination: route.destination, destinationLength: route.destinationLength } : {}),
    ...(route.gateway ? { gateway: route.gateway } : {}),
    ...(route.preferredSource ? { preferredSource: route.preferredSource } : {}),
    table: route.table,
    protocol: route.protocol,
    scope: route.scope,
    type: route.type,
    // Only ONLINK is a request flag; LINKDOWN and friends are state the kernel reports.
    flags: route.flags & RouteFlag.ONLINK,
    ...(route.priority !== undefined ? { priority: route.priority } : {}),
    ...(route.mtu !== undefined ? { mtu: route.mtu } : {}),
  };
}
