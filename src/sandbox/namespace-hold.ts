/**
 * One namespace holds one sandbox's NICs. A second attach into a namespace another sandbox holds
 * would otherwise find nothing to attach (the macvtap model moved the pod links' addresses into the
 * first VM, so they are skipped as "no address") and succeed with no network, or stack its plumbing
 * on the first sandbox's. Attaches into one namespace take turns on an flock of the namespace's own
 * nsfs inode (no file to leave behind, released by the kernel when the process dies), and each
 * checks, under it, that no other sandbox holds the namespace.
 */
import { VcnetError } from '../errors.js';
import { nativeFileLock } from '../native/file-lock.js';
import type { Link } from '../netlink/codec/link.js';
import { recordsHoldingLink, recordsOfNamespace } from '../network/garbage-collector.js';
import { LinkNameTakenError, VCNET_LINK_GROUP, VCNET_LINK_KINDS } from '../network/plan/plan-attach.js';
import { shellWord } from '../network/plan/shell-word.js';
import { holderOf, pollForLock } from '../network/state/lock.js';

/**
 * A record names the namespace but no link of vcnet's group is in it (the `existing` model hands a
 * VM a macvtap as it is): the namespace is that sandbox's. A link of vcnet's group a record made is
 * refused as LinkNameTakenError, as a tcfilter attach always found tap0_kata taken; one no record
 * knows as UnrecordedGroupLinkError.
 */
export class NamespaceHeldError extends VcnetError {
  static override readonly errorName: string = 'NamespaceHeldError';
  constructor(namespacePath: string, owner: { id: string; file: string }) {
    super(
      'VCNET_LINK_NAME_TAKEN',
      `the namespace ${namespacePath} holds the NICs of sandbox ${owner.id}; nothing was changed`,
      {
        value: owner.id,
        hint: `one namespace holds one sandbox's NICs: detach sandbox ${owner.id} first (its record: ${owner.file})`,
      },
    );
  }
}

/**
 * A link in vcnet's group that no record in any state directory vcnet reads knows: either vcnet's,
 * its record lost (gc takes it), or someone else's moved into the group (gc never touches it).
 */
export class UnrecordedGroupLinkError extends VcnetError {
  static override readonly errorName: string = 'UnrecordedGroupLinkError';
  constructor(namespacePath: string, link: Pick<Link, 'name' | 'index' | 'kind'>) {
    const kind = link.kind ?? 'link of no kind';
    const group = `0x${VCNET_LINK_GROUP.toString(16)}`;
    super(
      'VCNET_LINK_NAME_TAKEN',
      `the namespace ${namespacePath} has ${link.name} (index ${link.index}, ${kind}) in vcnet's link group ${group}, but no vcnet record knows it; vcnet takes a namespace with such a link for another sandbox's, and attaches nothing into it`,
      {
        value: link.name,
        hint: VCNET_LINK_KINDS.has(link.kind ?? '')
          ? `if the sandbox that made it is gone with its record, \`vcnet gc --netns ${shellWord(namespacePath)}\` deletes it (not while a process holds it open); if its record is in another state directory, name it with --state-dir`
          : `vcnet never makes a ${kind}, and gc leaves it: someone moved it into vcnet's group; once you know who, put it back with \`ip link set dev ${shellWord(link.name)} group default\` inside the namespace`,
      },
    );
  }
}

/** The namespace stayed locked by another attach past the wait. */
export class NamespaceBusyError extends VcnetError {
  static override readonly errorName: string = 'NamespaceBusyError';
  constructor(namespacePath: string, holder: number, waitedMs: number) {
    const who = holder > 0 ? `process ${holder}` : 'another process (which one cannot be known)';
    super(
      'VCNET_SANDBOX_LOCKED',
      `the namespace ${namespacePath} is being attached by ${who} (waited ${waitedMs} ms)`,
      {
        value: holder,
        hint: 'wait for the other attach to finish (one namespace holds one sandbox), or give a longer --lock-timeout',
      },
    );
  }
}

/**
 * Takes the namespace's attach lock on `fd` (an open fd of the namespace), polling until `timeoutMs`.
 * Held until the fd is closed.
 */
export async function lockNamespace(fd: number, namespacePath: string, timeoutMs: number): Promise<void> {
  await pollForLock(
    () => (nativeFileLock.lockFile(fd, true) ? true : undefined),
    timeoutMs,
    () => new NamespaceBusyError(namespacePath, holderOf(fd), timeoutMs),
  );
}

/**
 * Refuses a namespace another sandbox holds: a link in vcnet's link group is in it, or a record names
 * it. Records are read only when a link says a VM may be there (vcnet's group, or a macvtap, which
 * the `existing` model hands to a VM as it is), so an attach into a fresh pod reads none.
 */
export function refuseHeldNamespace(
  links: readonly Link[],
  identity: { dev: number; ino: number },
  namespacePath: string,
  stateDirectories: readonly string[],
): void {
  const grouped = links.find((link) => link.group === VCNET_LINK_GROUP);
  if (!grouped && !links.some((link) => link.kind === 'macvtap')) return;
  if (grouped) {
    const [owner] = recordsHoldingLink(identity, grouped, stateDirectories);
    if (owner) throw new LinkNameTakenError(grouped.name, grouped, undefined, owner);
    const [recorded] = recordsOfNamespace(identity, stateDirectories);
    if (recorded) throw new NamespaceHeldError(namespacePath, recorded);
    throw new UnrecordedGroupLinkError(namespacePath, grouped);
  }
  const [recorded] = recordsOfNamespace(identity, stateDirectories);
  if (recorded) throw new NamespaceHeldError(namespacePath, recorded);
}
