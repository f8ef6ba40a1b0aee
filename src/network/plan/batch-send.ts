/**
 * How the executor sends changes: each put in a netlink batch with its links resolved (queueChange),
 * and sendBatch, the one loop attach (apply.ts), the watch's tc repair (sendChanges) and their tests
 * send through: one batch, then an ingress qdisc the kernel refused with EBUSY added again on its own
 * as Kata does, with what it held back, and every other refusal thrown or answered as the caller says.
 */
import { channels, publish } from '../../diagnostics.js';
import { errnoOf } from '../../errors.js';
import type { LinkSpec } from '../../netlink/codec/link.js';
import { NeighbourFlag } from '../../netlink/codec/neighbour.js';
import type { RouteSpec } from '../../netlink/codec/route.js';
import { MATCH_ALL_U32_KEYS } from '../../netlink/codec/tc/filter/u32.js';
import { formatHandle } from '../../netlink/codec/tc/message.js';
import { ChangeBatch, type NetlinkHandle } from '../../netlink/handle.js';
import { addIngressQdiscRetrying } from '../ingress-qdisc.js';
import { ADDRESS_GENERATION_SYSCTL, commandOf, formatU32Handle } from './commands.js';
import { routeArguments } from './route-command.js';
import type { Change, LinkRef, RouteRecord } from './types.js';

function isIngressQdisc(change: Change): change is Extract<Change, { op: 'add-qdisc' }> {
  return change.op === 'add-qdisc' && change.kind === 'ingress';
}

/** One event per step on vcnet:plan:step, built only when someone listens. */
export function publishStep(handle: NetlinkHandle, change: Change, phase: 'apply' | 'undo', error?: unknown): void {
  publish(channels.planStep, () => ({
    namespacePath: handle.namespacePath,
    step: commandOf(change),
    phase,
    ...(error !== undefined ? { error } : {}),
  }));
}

/** The link a create-link change makes, with its parent's index resolved (and its own, when chosen). */
export function linkSpecOf(
  change: Extract<Change, { op: 'create-link' }>,
  indexOf: (ref: LinkRef) => number,
  chosenIndex?: number,
): LinkSpec {
  return {
    name: change.link.name,
    ...(chosenIndex !== undefined ? { index: chosenIndex } : {}),
    ...(change.parent ? { parentIndex: indexOf(change.parent) } : {}),
    ...(change.mtu !== undefined ? { mtu: change.mtu } : {}),
    ...(change.address ? { address: change.address } : {}),
    ...(change.group !== undefined ? { group: change.group } : {}),
    ...(change.txQueueLength !== undefined ? { txQueueLength: change.txQueueLength } : {}),
    ...(change.allMulticast ? { allMulticast: true } : {}),
    data: change.kind === 'macvtap' ? { kind: 'macvtap', mode: 'bridge' } : { kind: 'ifb' },
  };
}

/** Puts one change in a batch, with link indexes resolved. */
export function queueChange(
  batch: ChangeBatch,
  change: Change,
  indexOf: (ref: LinkRef) => number,
  chosenIndexes?: ReadonlyMap<string, number>,
): void {
  switch (change.op) {
    case 'create-tap':
      throw new Error('a tap is made by ioctl, not netlink');
    case 'create-link':
      batch.addLink(linkSpecOf(change, indexOf, chosenIndexes?.get(change.link.name)));
      return;
    case 'delete-link':
      batch.deleteLink(indexOf(change.link), `delete ${change.kind} ${change.link.name}`);
      return;
    case 'delete-link-group':
      batch.deleteLinkGroup(change.group);
      return;
    case 'set-link':
      batch.setLink(
        indexOf(change.link),
        change.set,
        `set ${Object.keys(change.set).join(', ')} of ${change.link.name}`,
      );
      return;
    case 'set-address-generation':
      // An addon without the call: the netlink attribute, which sets the mode but generates nothing.
      if (ChangeBatch.canSetSysctl()) {
        batch.setSysctl(change.link.name, 'addr_gen_mode', String(ADDRESS_GENERATION_SYSCTL[change.mode]));
      } else {
        batch.setLink(
          indexOf(change.link),
          { ipv6AddressGeneration: change.mode },
          `set ipv6AddressGeneration of ${change.link.name}`,
        );
      }
      return;
    case 'add-qdisc':
      batch.addQdisc(
        {
          index: indexOf(change.link),
          handle: change.handle,
          parent: change.parent,
          options:
            change.kind === 'htb' ? { kind: 'htb', defaultClass: change.defaultClass ?? 0 } : { kind: 'ingress' },
        },
        `add ${change.kind} qdisc ${formatHandle(change.handle)} on ${change.link.name}`,
      );
      return;
    case 'delete-qdisc':
      batch.deleteQdisc(
        indexOf(change.link),
        change.handle,
        change.parent,
        `delete qdisc ${formatHandle(change.handle)} on ${change.link.name}`,
      );
      return;
    case 'add-class': {
      const spec = {
        index: indexOf(change.link),
        handle: change.handle,
        parent: change.parent,
        rateBitsPerSecond: change.rateBitsPerSecond,
      };
      const description = `htb class ${formatHandle(change.handle)} on ${change.link.name}`;
      if (change.change) batch.changeHtbClass(spec, `change ${description}`);
      else batch.addHtbClass(spec, `add ${description}`);
      return;
    }
    case 'add-filter':
      batch.addFilter(
        {
          index: indexOf(change.link),
          parent: change.parent,
          priority: change.priority,
          protocol: change.protocol,
          options: {
            kind: 'u32',
            keys: MATCH_ALL_U32_KEYS,
            actions: [
              { kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: indexOf(change.redirectTo) },
            ],
          },
        },
        `add u32 filter prio ${change.priority} on ${change.link.name} parent ${formatHandle(change.parent)} (redirect to ${change.redirectTo.name})`,
      );
      return;
    case 'delete-filter':
      batch.deleteFilter(
        {
          index: indexOf(change.link),
          parent: change.parent,
          priority: change.priority,
          protocol: change.protocol,
          kind: change.kind,
          ...(change.handle !== undefined ? { handle: change.handle } : {}),
        },
        `delete filter prio ${change.priority}${change.handle !== undefined ? ` handle ${formatU32Handle(change.handle)}` : ''} on ${change.link.name} parent ${formatHandle(change.parent)}`,
      );
      return;
    case 'add-address':
      batch.addAddress(
        { index: indexOf(change.link), ...change.address },
        `add address ${change.address.address}/${change.address.prefixLength} on ${change.link.name}`,
      );
      return;
    case 'change-address':
      batch.changeAddress(
        { index: indexOf(change.link), ...change.address },
        `change address ${change.address.address}/${change.address.prefixLength} on ${change.link.name}`,
      );
      return;
    case 'delete-address':
      // A point-to-point address is known by its local address and its peer (IFA_ADDRESS): without
      // the peer the kernel finds no such address (EADDRNOTAVAIL).
      batch.deleteAddress(
        {
          index: indexOf(change.link),
          address: change.address.address,
          prefixLength: change.address.prefixLength,
          ...(change.address.peer ? { peer: change.address.peer } : {}),
        },
        `delete address ${change.address.address}/${change.address.prefixLength}${change.address.peer ? ` peer ${change.address.peer}` : ''} on ${change.link.name}`,
      );
      return;
    case 'add-route':
      // Added, not replaced, so a route set in its place since attach stays; replaced only where an
      // address put back just before made the kernel's own prefix route there (CNI ptp's
      // `10.x.0.0/24 via <gw>`, which ptp itself sets by RouteReplace over it).
      batch.addRoute(
        routeSpecOf(change.route, indexOf(change.link)),
        change.replace === true,
        `${change.replace ? 'replace' : 'add'} route ${routeArguments(change.route, change.link)}`,
      );
      return;
    case 'delete-route':
      batch.deleteRoute(
        routeSpecOf(change.route, indexOf(change.link)),
        `delete route ${routeArguments(change.route, change.link)}`,
      );
      return;
    case 'add-neighbour':
      batch.addNeighbour(
        { index: indexOf(change.link), ...change.neighbour },
        true,
        `add neighbour ${change.neighbour.destination} on ${change.link.name}`,
      );
      return;
    case 'delete-neighbour':
      batch.deleteNeighbour({
        index: indexOf(change.link),
        destination: change.neighbour.destination,
        // NTF_PROXY makes it the proxy entry that goes, not an ordinary neighbour of that address.
        flags: (change.neighbour.flags ?? 0) & NeighbourFlag.PROXY,
      });
      return;
  }
}

/** The kernel's answer to one change sent. */
export type ChangeAnswer = { ok: true } | { ok: false; error: Error };

/** How sendBatch uses its caller's state, and what it does with a refusal. */
export interface BatchSending {
  /** The index of a link a change names: there already, or made by a change sent before it. */
  indexOf: (ref: LinkRef) => number;
  /** The index each link the changes make is made at (queueChange). */
  chosenIndexes?: ReadonlyMap<string, number>;
  /** Called before each send, a batch or an ingress qdisc on its own (attach journals). */
  beforeSend?: () => void;
  /** Told each answer a batch gives, in order, and an ingress qdisc's once it is there. */
  answered?: (position: number, answer: ChangeAnswer) => void;
  /**
   * Whether a refusal (other than an ingress qdisc's EBUSY, which is retried) throws, ending the
   * send (attach, which then undoes what it made); otherwise it is that change's answer and the
   * other changes go on (the watch's repair).
   */
  failOnRefusal?: boolean;
  /**
   * Asked before a refusal is thrown: true when the caller has taken away its cause (an ifb to be
   * made at another index), and the change and all the batch refused after it go again.
   */
  retryRefused?: (position: number, error: Error) => Promise<boolean>;
}

/**
 * The executor's one way of sending changes: all in one netlink batch, then each refusal in order.
 * An ingress qdisc refused with EBUSY (another tc user changing that link's qdiscs for a moment) is
 * added again on its own as Kata does (addIngressQdiscRetrying), and the changes on its link the
 * batch refused after it (its filters fail while it is missing) go again once it is there. Any other
 * refusal is thrown or answered, as `sending` says. Returns the answer to each change, in order.
 */
export async function sendBatch(
  transport: Pick<NetlinkHandle, 'changes' | 'addQdisc' | 'qdiscs'>,
  changes: readonly Change[],
  sending: BatchSending,
): Promise<ChangeAnswer[]> {
  const answers: ChangeAnswer[] = [];
  const answer = (position: number, given: ChangeAnswer): void => {
    answers[position] = given;
    sending.answered?.(position, given);
  };
  const send = async (positions: readonly number[]): Promise<void> => {
    sending.beforeSend?.();
    const batch = transport.changes();
    for (const position of positions) queueChange(batch, changes[position]!, sending.indexOf, sending.chosenIndexes);
    const outcomes = await batch.send();
    positions.forEach((position, sent) => {
      const outcome = outcomes[sent];
      answer(
        position,
        outcome?.ok ? { ok: true } : { ok: false, error: outcome?.error ?? new Error('the kernel did not answer') },
      );
    });
    await settleRefusals(positions);
  };
  // The refusals of one send, in order. What goes again is settled by that send, not here.
  const settleRefusals = async (positions: readonly number[]): Promise<void> => {
    const sentAgain = new Set<number>();
    const refusedAfter = (at: number, which: (change: Change) => boolean): number[] =>
      positions.slice(at).filter((position) => !answers[position]!.ok && which(changes[position]!));
    for (const [at, position] of positions.entries()) {
      const current = answers[position]!;
      if (current.ok || sentAgain.has(position)) continue;
      const change = changes[position]!;
      let error = current.error;
      if (isIngressQdisc(change) && errnoOf(error) === 'EBUSY') {
        sending.beforeSend?.();
        const link = { index: sending.indexOf(change.link), name: change.link.name };
        const refusedAlone = await addIngressQdiscRetrying(transport, link).then(
          () => undefined,
          (failure: unknown) => failure as Error,
        );
        if (refusedAlone === undefined) {
          answer(position, { ok: true });
          const again = refusedAfter(at + 1, (later) => onLink(later, change.link));
          for (const later of again) sentAgain.add(later);
          if (again.length > 0) await send(again);
          continue;
        }
        error = refusedAlone;
        // Told as the final answer: one whose answer was lost may have been made (apply.ts).
        answer(position, { ok: false, error });
      }
      if (!sending.failOnRefusal) continue;
      if (!(await sending.retryRefused?.(position, error))) throw error;
      const again = refusedAfter(at, () => true);
      for (const later of again) sentAgain.add(later);
      await send(again);
    }
  };
  if (changes.length > 0) await send(changes.map((_, position) => position));
  return answers;
}

/** Whether a change is on `link` (by index where both say it, else by name: a link made in this plan has no index in it). */
function onLink(change: Change, link: LinkRef): boolean {
  if (!('link' in change)) return false;
  const { index, name } = change.link;
  return index !== undefined && link.index !== undefined ? index === link.index : name === link.name;
}

/**
 * A route with its link resolved. A multipath route names its links in its hops alone: with RTA_OIF
 * as well, the kernel would match a delete against the first hop only.
 */
function routeSpecOf(route: RouteRecord, linkIndex: number): RouteSpec {
  const { nextHops, ...rest } = route;
  if (!nextHops || nextHops.length === 0) return { ...rest, outputIndex: linkIndex };
  return {
    ...rest,
    nextHops: nextHops.map(({ link, ...hop }) => ({ ...hop, outputIndex: link ? link.index : linkIndex })),
  };
}
