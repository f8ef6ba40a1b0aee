/**
 * Whether an attach killed before its last record write made an endpoint's pod-link steps, for an
 * endpoint whose own link (tap, macvtap) is recorded `unconfirmed` and is not there. That link's
 * absence alone does not say "never made": it may have been made, with everything after it, and
 * deleted since (an operator tidying up, a pod restart). The steps on pod links after it go to the
 * kernel in one netlink batch (one sendto), which the kernel processes to its end whatever happens
 * to the sender; so when any of them shows its effect, all of them were made, and detach and gc undo
 * them as usual. Only what is vcnet's beyond doubt counts:
 *   - the redirect filter at its recorded priority on the pod link's ingress: a u32 match-all whose
 *     one action is a mirred egress redirect to the link's recorded index (or to none: its target was
 *     deleted);
 *   - the pod link's root htb of exactly a vcnet rate limit's shape (isVcnetHtb);
 *   - the pod link's MAC as the private one vcnet set (macvtap), chosen at random for the attach.
 * Not an ingress qdisc, an addrgenmode, an address, route or neighbour gone: another tool (or the
 * pod's owner) may have done the same after a kill before the batch, and theirs is left as it is.
 */
import type { Link } from '../../netlink/codec/link.js';
import type { Filter } from '../../netlink/codec/tc/filter.js';
import { TC_H_ROOT } from '../../netlink/codec/tc/message.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { isVcnetHtb, isVcnetRedirect } from '../foreign-filters.js';
import { createdLinkNames, linkResolver } from './plan-detach.js';
import type { PlumbingStep } from './types.js';

/** What the kernel shows on the pod links that podBatchesInPlace looks at. */
export interface PodLinkView {
  links: readonly Link[];
  /** The filters of a pod link under a parent, by filterViewKey. */
  filters: ReadonlyMap<string, readonly Filter[]>;
  /** The root qdisc handle of each pod link (by ifindex) whose root is a vcnet rate limit's htb. */
  vcnetHtbs: ReadonlyMap<number, number>;
}

export function filterViewKey(index: number, parent: number): string {
  return `${index}/${parent >>> 0}`;
}

/** The pod-link records made after one of the `absent` links (their `madeAfter`), with the link they are on now. */
function candidates(
  records: readonly PlumbingStep[],
  absent: ReadonlySet<string>,
  links: readonly Link[],
): Array<{ record: Exclude<PlumbingStep, { step: 'create-link' }>; link: Link }> {
  const resolve = linkResolver(links);
  const own = createdLinkNames(records);
  return records.flatMap((record) => {
    if (record.step === 'create-link' || own.has(record.link)) return [];
    if (record.madeAfter === undefined || !absent.has(record.madeAfter)) return [];
    const link = resolve(record.link, record.index);
    return link ? [{ record, link }] : [];
  });
}

/**
 * Of the `absent` links (recorded `unconfirmed`, not there: plan-detach.ts unconfirmedLinksAbsent),
 * those whose pod-link steps show their effect in `view`: made, and gone since. Pure.
 */
export function podBatchesInPlace(
  records: readonly PlumbingStep[],
  absent: ReadonlySet<string>,
  view: PodLinkView,
): Set<string> {
  const chosenIndex = new Map(
    records.flatMap((record) =>
      record.step === 'create-link' && record.index !== undefined ? [[record.name, record.index] as const] : [],
    ),
  );
  const inPlace = new Set<string>();
  for (const { record, link } of candidates(records, absent, view.links)) {
    const after = record.madeAfter!;
    if (inPlace.has(after)) continue;
    let shown = false;
    if (record.step === 'add-filter' && record.redirectTo) {
      const target = record.redirectTo.index ?? chosenIndex.get(record.redirectTo.link);
      // A mirred whose target was deleted dumps ifindex 0.
      const targets = new Set([0, ...(target !== undefined ? [target] : [])]);
      const present = view.filters.get(filterViewKey(link.index, record.parent)) ?? [];
      shown = present.some(
        (filter) =>
          filter.priority === record.priority &&
          'actions' in filter.options &&
          filter.options.actions.length > 0 &&
          isVcnetRedirect(filter, record.kind, targets),
      );
    } else if (record.step === 'add-qdisc' && record.kind === 'htb') {
      shown = view.vcnetHtbs.get(link.index) === record.handle;
    } else if (record.step === 'change-link' && record.set?.address !== undefined) {
      const set = record.set.address.toLowerCase();
      shown = link.address?.toLowerCase() === set && record.before.address?.toLowerCase() !== set;
    }
    if (shown) inPlace.add(after);
  }
  return inPlace;
}

/**
 * The view podBatchesInPlace needs, read from the kernel: only the pod links and parents the
 * candidate records name (nothing is read when no record was made after an absent link).
 */
export async function podLinkView(
  handle: Pick<NetlinkHandle, 'filters' | 'classes' | 'qdiscs'>,
  records: readonly PlumbingStep[],
  absent: ReadonlySet<string>,
  links: readonly Link[],
): Promise<PodLinkView> {
  const filters = new Map<string, readonly Filter[]>();
  const vcnetHtbs = new Map<number, number>();
  const htbLooked = new Set<number>();
  for (const { record, link } of candidates(records, absent, links)) {
    if (record.step === 'add-filter') {
      const key = filterViewKey(link.index, record.parent);
      if (!filters.has(key)) filters.set(key, await handle.filters(link.index, record.parent).catch(() => []));
    } else if (record.step === 'add-qdisc' && record.kind === 'htb' && !htbLooked.has(link.index)) {
      htbLooked.add(link.index);
      // The link may go meanwhile: then nothing of it shows.
      try {
        const qdiscs = await handle.qdiscs(link.index);
        const root = qdiscs.find((qdisc) => qdisc.parent === TC_H_ROOT);
        if (root?.kind !== 'htb') continue;
        const [classes, onRoot] = await Promise.all([
          handle.classes(link.index),
          handle.filters(link.index, root.handle),
        ]);
        if (isVcnetHtb(root, classes, onRoot, qdiscs)) vcnetHtbs.set(link.index, root.handle);
      } catch {}
    }
  }
  return { links, filters, vcnetHtbs };
}
