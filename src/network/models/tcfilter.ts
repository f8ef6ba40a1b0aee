/**
 * tcfilter (Kata's default): a tap beside the pod interface, an ingress qdisc on both, and a u32
 * match-all filter on each that redirects (mirred egress, STOLEN) every frame to the other side.
 * The pod interface keeps its MAC and addresses; the guest NIC takes the pod interface's MAC.
 */
import { ETH_P_ALL, INGRESS_HANDLE, TC_H_INGRESS } from '../../netlink/codec/constants.js';
import type { Link } from '../../netlink/codec/link.js';
import { type FilterSpec, ingressQdisc, MATCH_ALL_U32_KEYS, parseHandle } from '../../netlink/codec/traffic-control.js';
import { addHtbLimit, FILTER_PRIORITY } from '../rate-limit.js';
import {
  type AttachedPlumbing,
  buildInTransaction,
  configureCreatedLink,
  createTap,
  type LinkReference,
  type PlumbingContext,
} from './plumbing-context.js';

/** clsact's ingress hook. */
const CLSACT_INGRESS_PARENT = 0xfffffff2;
/** Filters go under the ingress qdisc's handle, ffff:, as `tc filter add ... parent ffff:` does. */
const INGRESS_FILTER_PARENT = INGRESS_HANDLE;

function redirectFilter(from: LinkReference, to: LinkReference, parent: number, priority: number): FilterSpec {
  return {
    index: from.index,
    parent,
    priority,
    protocol: ETH_P_ALL,
    options: {
      kind: 'u32',
      keys: MATCH_ALL_U32_KEYS,
      actions: [{ kind: 'mirred', direction: 'egress', mode: 'redirect', targetIndex: to.index }],
    },
  };
}

/** A filter priority on `link`'s ingress that nothing else uses, so deleting it later is exact. */
async function freeIngressPriority(context: PlumbingContext, link: Link, parent: number): Promise<number> {
  const used = new Set((await context.handle.filters(link.index, parent)).map((filter) => filter.priority));
  let priority = FILTER_PRIORITY;
  while (used.has(priority)) priority++;
  return priority;
}

export function attachTcFilter(context: PlumbingContext, source: Link, tapName: string): Promise<AttachedPlumbing> {
  return buildInTransaction(context, async (transaction, holdFds) => {
    const created = createTap(transaction, tapName);
    holdFds(created.fds);
    const tap = created.link;
    await context.hooks?.afterTapCreated?.(tapName);
    configureCreatedLink(transaction, tap, source.mtu);
    transaction.add((batch) => batch.addQdisc(ingressQdisc(tap.index)), {
      step: 'add-qdisc',
      link: tap.name,
      handle: parseHandle('ffff:'),
      parent: TC_H_INGRESS,
      kind: 'ingress',
    });

    // The pod interface may already have an ingress (or clsact) qdisc of its own: keep it, add beside it.
    const existing = context.qdiscs.find((qdisc) => qdisc.index === source.index && qdisc.parent === TC_H_INGRESS);
    const parent = existing?.kind === 'clsact' ? CLSACT_INGRESS_PARENT : INGRESS_FILTER_PARENT;
    let priority = FILTER_PRIORITY;
    if (existing) {
      priority = await freeIngressPriority(context, source, parent);
    } else {
      transaction.add((batch) => batch.addQdisc(ingressQdisc(source.index)), {
        step: 'add-qdisc',
        link: source.name,
        handle: parseHandle('ffff:'),
        parent: TC_H_INGRESS,
        kind: 'ingress',
      });
    }
    transaction.add((batch) => batch.addFilter(redirectFilter(source, tap, parent, priority)), {
      step: 'add-filter',
      link: source.name,
      parent,
      priority,
      protocol: ETH_P_ALL,
      kind: 'u32',
    });
    transaction.add((batch) => batch.addFilter(redirectFilter(tap, source, INGRESS_FILTER_PARENT, FILTER_PRIORITY)), {
      step: 'add-filter',
      link: tap.name,
      parent: INGRESS_FILTER_PARENT,
      priority: FILTER_PRIORITY,
      protocol: ETH_P_ALL,
      kind: 'u32',
    });
    if (context.rateLimit?.rxBitsPerSecond) addHtbLimit(transaction, tap, context.rateLimit.rxBitsPerSecond);
    if (context.rateLimit?.txBitsPerSecond) addHtbLimit(transaction, source, context.rateLimit.txBitsPerSecond);
    await transaction.commit();
    return { model: 'tcfilter', tapName, tapIndex: tap.index, guestHardwareAddress: source.address ?? '' };
  });
}
