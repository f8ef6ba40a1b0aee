/**
 * Others' tc objects in the qdiscs vcnet added on pod links, read before the undo batch is built, so
 * detach decides from what the kernel holds now, not from the record alone:
 *   ingress  one qdisc per link that every tc user shares: it stays when someone else has put a
 *            filter into it since (vcnet then deletes only its own filters, by priority).
 *   htb      vcnet's rate limit, on a link that had no shaping before attach (plan-attach refuses to
 *            replace a configured root): it goes, with whatever was put into it, so the link is as it
 *            was before attach; a notice names what of another tool's went with it.
 */
import type { Link } from '../netlink/codec/link.js';
import { formatHandle } from '../netlink/codec/tc/message.js';
import type { NetlinkHandle } from '../netlink/handle.js';
import { createdLinkNames, qdiscKey } from './plan/plan-detach.js';
import type { PlumbingStep } from './plan/types.js';

export interface OthersInQdiscs {
  /** Ingress qdiscs vcnet added that hold another tool's filter (key → why): kept, only vcnet's filters go. */
  kept: Map<string, string>;
  /** Shaping qdiscs vcnet added that hold another tool's filters, classes or qdiscs (key → what): deleted with them. */
  deletedWith: Map<string, string>;
}

/** "prio 3, 7": a u32 filter dumps as several entries (its hash table, its nodes) under one priority. */
function priorities(filters: ReadonlyArray<{ priority: number }>): string {
  return [...new Set(filters.map((filter) => filter.priority))].join(', ');
}

/** The classes vcnet's htb tree has (plan-attach.ts htbSteps): major:1 and major:2. */
function isVcnetClass(classHandle: number, qdiscHandle: number): boolean {
  const minor = classHandle & 0xffff;
  return classHandle >>> 16 === qdiscHandle >>> 16 && (minor === 1 || minor === 2);
}

/** What another tool put into vcnet's htb on `index`: filters on it or its classes, classes, child qdiscs. */
async function othersInShapingQdisc(
  handle: Pick<NetlinkHandle, 'filters' | 'classes' | 'qdiscs'>,
  index: number,
  qdiscHandle: number,
): Promise<string[]> {
  const major = qdiscHandle >>> 16;
  const classes = (await handle.classes(index).catch(() => [])).filter((cls) => cls.handle >>> 16 === major);
  const theirs: string[] = [];
  for (const parent of [qdiscHandle, ...classes.map((cls) => cls.handle)]) {
    // vcnet adds no filter to its htb: every filter in it is another tool's.
    const filters = await handle.filters(index, parent).catch(() => []);
    if (filters.length > 0) {
      const kinds = [...new Set(filters.map((filter) => filter.kind))].join(', ');
      const where = parent === qdiscHandle ? '' : ` on class ${formatHandle(parent)}`;
      theirs.push(`filter prio ${priorities(filters)} (${kinds})${where}`);
    }
  }
  for (const cls of classes)
    if (!isVcnetClass(cls.handle, qdiscHandle)) theirs.push(`class ${formatHandle(cls.handle)}`);
  const children = (await handle.qdiscs(index).catch(() => [])).filter(
    (qdisc) => qdisc.parent >>> 16 === major && qdisc.handle >>> 16 !== major && qdisc.handle !== 0,
  );
  for (const qdisc of children) theirs.push(`${qdisc.kind} qdisc ${formatHandle(qdisc.handle)}`);
  return theirs;
}

/** For the qdiscs the records say vcnet added on pod links: those kept, and those that take others' objects with them. */
export async function othersInQdiscs(
  handle: Pick<NetlinkHandle, 'filters' | 'classes' | 'qdiscs'>,
  steps: readonly PlumbingStep[],
  /** The link a record means now (plan-detach.ts linkResolver). */
  resolve: (name: string, index?: number) => Link | undefined,
): Promise<OthersInQdiscs> {
  // A qdisc on a link vcnet created goes with that link, whoever's filters are in it.
  const deletedLinks = createdLinkNames(steps);
  const result: OthersInQdiscs = { kept: new Map(), deletedWith: new Map() };
  for (const step of steps) {
    if (step.step !== 'add-qdisc' || deletedLinks.has(step.link)) continue;
    const link = resolve(step.link, step.index);
    if (!link) continue;
    const key = qdiscKey(step.link, step.handle);
    if (step.kind !== 'ingress') {
      const theirs = await othersInShapingQdisc(handle, link.index, step.handle);
      if (theirs.length > 0) result.deletedWith.set(key, theirs.join(', '));
      continue;
    }
    const ours = new Set(
      steps
        .filter(
          (other) =>
            other.step === 'add-filter' && other.link === step.link && other.parent >>> 16 === step.handle >>> 16,
        )
        .map((other) => (other as { priority: number }).priority),
    );
    const present = await handle.filters(link.index, step.handle).catch(() => []);
    const theirs = present.filter((filter) => !ours.has(filter.priority));
    if (theirs.length > 0) {
      const several = new Set(theirs.map((filter) => filter.priority)).size > 1;
      result.kept.set(key, `it holds another tool's filter${several ? 's' : ''} (prio ${priorities(theirs)})`);
    }
  }
  return result;
}
