/**
 * What undoes a change, and the record detach keeps of it: both derived from the change itself, so
 * an undo can never drift from its request (same link, parent, priority, protocol, handle).
 */
import { RouteFlag } from '../../netlink/codec/route.js';
import { RouteMetric } from '../../netlink/codec/route-attributes.js';
import type {
  AddressRecord,
  Change,
  LinkAttributes,
  LinkRef,
  NextHopRecord,
  PlanStep,
  PlumbingStep,
  RouteRecord,
} from './types.js';

/** Address flags a request may carry (nodad, optimistic, homeaddress, managetempaddr, noprefixroute). */
const REQUEST_ADDRESS_FLAGS = 0x2 | 0x4 | 0x10 | 0x100 | 0x200;

/**
 * The change that undoes `change`. `before` is what a set-link replaces (from the scan). Changes to an
 * object the plan creates itself (its MTU, an htb class) have no undo of their own: they go with it.
 */
export function undoOf(change: Change, before?: LinkAttributes): Change | undefined {
  switch (change.op) {
    case 'create-tap':
      return { op: 'delete-link', link: change.link, kind: 'tun' };
    case 'create-link':
      return { op: 'delete-link', link: change.link, kind: change.kind };
    case 'set-link':
      return change.link.role === 'pod' && before ? { op: 'set-link', link: change.link, set: before } : undefined;
    case 'add-qdisc':
      return {
        op: 'delete-qdisc',
        link: change.link,
        kind: change.kind,
        handle: change.handle,
        parent: change.parent,
      };
    case 'add-class':
      return undefined;
    case 'add-filter':
      return {
        op: 'delete-filter',
        link: change.link,
        parent: change.parent,
        priority: change.priority,
        protocol: change.protocol,
        kind: 'u32',
      };
    case 'delete-address':
      return { op: 'add-address', link: change.link, address: change.address };
    case 'delete-route':
      return { op: 'add-route', link: change.link, route: change.route };
    case 'delete-neighbour':
      return { op: 'add-neighbour', link: change.link, neighbour: change.neighbour };
    default:
      throw new Error(`no undo is defined for ${change.op} (attach plans do not use it)`);
  }
}

/** The identity a record keeps of a pod link (its ifindex), besides its name. */
function identityOf(link: LinkRef): { index?: number } {
  return link.role === 'pod' && link.index !== undefined ? { index: link.index } : {};
}

/**
 * The persisted record of an undo (the format detach, gc and CNI CHECK read). `change` is the change
 * the undo reverts: a change-link record keeps what vcnet set, so detach can tell a value the user
 * changed since (and leave it) from one vcnet set.
 */
function recordOf(undo: Change, change?: Change): PlumbingStep {
  switch (undo.op) {
    case 'delete-link':
      return { step: 'create-link', name: undo.link.name, kind: undo.kind };
    case 'delete-qdisc':
      return {
        step: 'add-qdisc',
        link: undo.link.name,
        ...identityOf(undo.link),
        handle: undo.handle,
        parent: undo.parent,
        kind: undo.kind,
      };
    case 'delete-filter':
      return {
        step: 'add-filter',
        link: undo.link.name,
        ...identityOf(undo.link),
        parent: undo.parent,
        priority: undo.priority,
        protocol: undo.protocol,
        kind: undo.kind,
        ...(change?.op === 'add-filter' ? { redirectTo: redirectTargetOf(change.redirectTo) } : {}),
      };
    case 'set-link': {
      const set = change?.op === 'set-link' ? attributesNamed(change.set, Object.keys(undo.set)) : undefined;
      return {
        step: 'change-link',
        link: undo.link.name,
        ...identityOf(undo.link),
        before: undo.set,
        ...(set ? { set } : {}),
      };
    }
    case 'add-address':
      return { step: 'remove-addresses', link: undo.link.name, ...identityOf(undo.link), addresses: [undo.address] };
    case 'add-route':
      return { step: 'remove-routes', link: undo.link.name, ...identityOf(undo.link), routes: [undo.route] };
    case 'add-neighbour':
      return {
        step: 'remove-neighbours',
        link: undo.link.name,
        ...identityOf(undo.link),
        neighbours: [undo.neighbour],
      };
    default:
      throw new Error(`${undo.op} is not an undo`);
  }
}

/** The redirect target a filter record keeps: its name, and its index when it exists already (a pod link). */
function redirectTargetOf(link: LinkRef): { link: string; index?: number } {
  return link.index !== undefined ? { link: link.name, index: link.index } : { link: link.name };
}

function attributesNamed(attributes: LinkAttributes, keys: readonly string[]): LinkAttributes {
  return Object.fromEntries(Object.entries(attributes).filter(([key]) => keys.includes(key))) as LinkAttributes;
}

/** A plan step: the change, its undo and its record, all from the change. */
export function stepOf(change: Change, before?: LinkAttributes): PlanStep {
  const undo = undoOf(change, before);
  return undo ? { change, undo, record: recordOf(undo, change) } : { change };
}

/** The undo changes a persisted record stands for (records may list several objects). */
export function undoChangesOf(
  record: PlumbingStep,
  link: (name: string, index?: number) => LinkRef,
  now?: number,
): Change[] {
  switch (record.step) {
    case 'create-link':
      return [{ op: 'delete-link', link: link(record.name), kind: record.kind }];
    case 'add-qdisc':
      return [
        {
          op: 'delete-qdisc',
          link: link(record.link, record.index),
          kind: record.kind,
          handle: record.handle,
          parent: record.parent,
        },
      ];
    case 'add-filter':
      return [
        {
          op: 'delete-filter',
          link: link(record.link, record.index),
          parent: record.parent,
          priority: record.priority,
          protocol: record.protocol,
          kind: record.kind,
        },
      ];
    case 'change-link': {
      const { name: _rename, qdisc: _qdisc, ...before } = record.before;
      return [{ op: 'set-link', link: link(record.link, record.index), set: before }];
    }
    case 'remove-addresses':
      // An address whose valid lifetime has passed since would be gone by now: it is not put back.
      return record.addresses.flatMap((address) => {
        const lifetimes = lifetimesLeft(address, now);
        if (!lifetimes) return [];
        return [
          {
            op: 'add-address' as const,
            link: link(record.link, record.index),
            address: { ...addressRequestOf(address), ...lifetimes },
          },
        ];
      });
    case 'remove-routes':
      // A route with a next hop on another link that is gone (or is another link now: found by its
      // ifindex) cannot come back as it was: like a route whose own link is gone, nothing to put back.
      // A route whose lifetime has passed since would be gone by now: it is not put back.
      return record.routes
        .filter((route) =>
          (route.nextHops ?? []).every((hop) => !hop.link || link(hop.link.name, hop.link.index).index !== undefined),
        )
        .flatMap((route) => {
          const restored = routeRestoredAt(route, now);
          return restored ? [{ op: 'add-route' as const, link: link(record.link, record.index), route: restored }] : [];
        });
    case 'remove-neighbours':
      return record.neighbours.map((neighbour) => ({
        op: 'add-neighbour' as const,
        link: link(record.link, record.index),
        neighbour,
      }));
  }
}

/** A route (as the kernel reports it, or as recorded) as a request that recreates it. */
export function routeRequestOf(route: RouteRecord): RouteRecord {
  // The MTU stays in `mtu`, where records before the other metrics keep it too.
  const { [RouteMetric.MTU]: metricMtu, ...metrics } = route.metrics ?? {};
  const mtu = route.mtu ?? (typeof metricMtu === 'number' ? metricMtu : undefined);
  return {
    ...(route.family !== undefined ? { family: route.family } : {}),
    ...(route.destination ? { destination: route.destination, destinationLength: route.destinationLength ?? 0 } : {}),
    ...(route.gateway ? { gateway: route.gateway } : {}),
    ...(route.preferredSource ? { preferredSource: route.preferredSource } : {}),
    ...(route.table !== undefined ? { table: route.table } : {}),
    ...(route.protocol !== undefined ? { protocol: route.protocol } : {}),
    ...(route.scope !== undefined ? { scope: route.scope } : {}),
    ...(route.type !== undefined ? { type: route.type } : {}),
    // Only ONLINK is a request flag; LINKDOWN and friends are state the kernel reports.
    flags: (route.flags ?? 0) & RouteFlag.ONLINK,
    ...(route.priority !== undefined ? { priority: route.priority } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
    ...(Object.keys(metrics).length > 0 ? { metrics } : {}),
    ...(route.realm !== undefined ? { realm: route.realm } : {}),
    ...(route.preference !== undefined ? { preference: route.preference } : {}),
    ...(route.expiresAt !== undefined ? { expiresAt: route.expiresAt } : {}),
    ...(route.tos ? { tos: route.tos } : {}),
    ...(route.nextHops && route.nextHops.length > 0 ? { nextHops: route.nextHops.map(nextHopRequestOf) } : {}),
  };
}

/**
 * An address (as the kernel reports it, or as recorded) as a request that recreates it: only request
 * flags, and without its lifetimes, which each caller states in its own terms.
 */
export function addressRequestOf(address: AddressRecord): AddressRecord {
  return {
    address: address.address,
    prefixLength: address.prefixLength,
    ...(address.scope !== undefined ? { scope: address.scope } : {}),
    flags: (address.flags ?? 0) & REQUEST_ADDRESS_FLAGS,
    ...(address.peer ? { peer: address.peer } : {}),
    ...(address.broadcast ? { broadcast: address.broadcast } : {}),
    ...(address.label ? { label: address.label } : {}),
    ...(address.routePriority !== undefined ? { routePriority: address.routePriority } : {}),
    ...(address.protocol !== undefined ? { protocol: address.protocol } : {}),
  };
}

/** Whole seconds from `now` until `until` (both ms since the epoch), rounded up. */
const secondsLeft = (until: number, now: number): number => Math.ceil((until - now) / 1000);

/**
 * What is left at `now` of a recorded address's lifetimes, in seconds (none for one that does not
 * expire), or undefined when its valid lifetime has passed. A passed preferred lifetime is 0: the
 * address comes back deprecated, as it would be by now (also one that never expires: `preferred_lft 0`).
 */
function lifetimesLeft(
  address: AddressRecord,
  now: number | undefined,
): { validLifetime?: number; preferredLifetime?: number } | undefined {
  if (now === undefined) return {};
  if (address.validUntil === undefined) {
    return address.preferredUntil === undefined
      ? {}
      : { preferredLifetime: Math.max(0, secondsLeft(address.preferredUntil, now)) };
  }
  const valid = secondsLeft(address.validUntil, now);
  if (valid <= 0) return undefined;
  const preferred =
    address.preferredUntil === undefined ? valid : Math.max(0, secondsLeft(address.preferredUntil, now));
  return { validLifetime: valid, preferredLifetime: Math.min(preferred, valid) };
}

/**
 * A recorded route as the request that puts it back at `now`: with the lifetime it has left, or
 * undefined when that has passed (the kernel would have removed it by now).
 */
function routeRestoredAt(route: RouteRecord, now: number | undefined): RouteRecord | undefined {
  const { expiresAt, ...request } = routeRequestOf(route);
  if (expiresAt === undefined || now === undefined) return request;
  const left = secondsLeft(expiresAt, now);
  return left > 0 ? { ...request, expires: left } : undefined;
}

function nextHopRequestOf(hop: NextHopRecord): NextHopRecord {
  return {
    ...(hop.gateway ? { gateway: hop.gateway } : {}),
    weight: hop.weight ?? 1,
    // As for routes: ONLINK is a request, DEAD and LINKDOWN (which the kernel refuses) are state.
    flags: (hop.flags ?? 0) & RouteFlag.ONLINK,
    ...(hop.realm !== undefined ? { realm: hop.realm } : {}),
    ...(hop.link ? { link: { name: hop.link.name, index: hop.link.index } } : {}),
  };
}
