/**
 * One namespace holds one sandbox's NICs. A second attach into a namespace another sandbox holds
 * would otherwise find nothing to attach (the macvtap model moved the pod links' addresses into the
 * first VM, so they are skipped as "no address") and succeed with no network, or stack its plumbing
 * on the first sandbox's. Every writer of vcnet's link group in a pod namespace (attach, detach,
 * vcnet-cni ADD and DEL) takes turns on an flock of the namespace's own nsfs inode (no file to leave
 * behind, released by the kernel when the process dies), always after its sandbox's (or container's)
 * lock, never before. Attach and ADD check, under it, that no other owner holds the namespace;
 * detach and DEL hold it from their look at the namespace to their last change, so that no link
 * joins vcnet's group in between (detach deletes the group whole when it holds only its own links).
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { VcnetError } from '../errors.js';
import type { Link } from '../netlink/codec/link.js';
import { isVcnetDevice } from '../network/link-name.js';
import {
  describeOwner,
  LinkNameTakenError,
  type LinkOwnerRecord,
  VCNET_LINK_GROUP,
  VCNET_LINK_KINDS,
} from '../network/plan/plan-attach.js';
import { recordsOfNamespace } from '../network/state/owners.js';
import { ipCommandIn, shellWord } from '../shell-word.js';

/**
 * A record names the namespace but no link of vcnet's group is in it (the `existing` model hands a
 * VM a macvtap as it is): the namespace is that sandbox's. A link of vcnet's group a record made is
 * refused as LinkNameTakenError, as a tcfilter attach always found tap0_kata taken (vcnet-cni, which
 * steps over taken names, says NamespaceHeldError naming the link); one no record knows as
 * UnrecordedGroupLinkError.
 */
export class NamespaceHeldError extends VcnetError {
  static override readonly errorName: string = 'NamespaceHeldError';
  constructor(namespacePath: string, owner: LinkOwnerRecord, link?: Pick<Link, 'name' | 'index' | 'kind'>) {
    const { who, release } = describeOwner(owner);
    const its = link ? ` (its ${link.name}, index ${link.index}${link.kind ? `, ${link.kind}` : ''})` : '';
    super(
      'VCNET_LINK_NAME_TAKEN',
      `the namespace ${namespacePath} holds the NICs of ${who}${its}; nothing was changed`,
      {
        value: owner.id,
        hint: `one namespace holds one sandbox's NICs: ${release}`,
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
          : `vcnet never makes a ${kind}, and gc leaves it: someone moved it into vcnet's group; once you know who, put it back with \`${ipCommandIn(namespacePath)} link set dev ${shellWord(link.name)} group default\``,
      },
    );
  }
}

/** A record file as the kernel resolves it, so a state directory named through a symlink is one file. */
function realFile(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * Refuses a namespace another owner holds: a link in vcnet's link group is in it, or a record names
 * it. Records are read only when a link says a VM may be there (vcnet's group, a link named as
 * vcnet's taps and ifbs, or a macvtap, which the `existing` model hands to a VM as it is), so an
 * attach into a fresh pod reads none.
 * `ownRecords` (vcnet-cni: the files of its container's records) are the caller's own: what they
 * made is no other owner's, and a foreign holder is named with NamespaceHeldError and its link.
 */
export function refuseHeldNamespace(
  links: readonly Link[],
  identity: { dev: number; ino: number; cookie?: string },
  namespacePath: string,
  stateDirectories: readonly string[],
  options: { ownRecords?: readonly string[] } = {},
): void {
  const grouped = links.filter((link) => link.group === VCNET_LINK_GROUP);
  // Named as vcnet's taps and ifbs, in no group: one an attach or ADD killed between making it and
  // moving it into the group left (its record has the create-link, but no device yet). Held when a
  // record says it made it; otherwise someone else's, or an orphan gc takes (vcnet-cni steps over its name).
  const named = links.filter((link) => link.group !== VCNET_LINK_GROUP && isVcnetDevice(link));
  if (grouped.length === 0 && named.length === 0 && !links.some((link) => link.kind === 'macvtap')) return;
  const records = recordsOfNamespace(identity, stateDirectories);
  const own = new Set((options.ownRecords ?? []).map(realFile));
  const others = records.filter((record) => !own.has(realFile(record.file)));
  const ours = records.filter((record) => own.has(realFile(record.file)));
  for (const link of named) {
    const owner = others.find((record) => record.holds(link));
    if (!owner) continue;
    if (options.ownRecords) throw new NamespaceHeldError(namespacePath, owner, link);
    throw new LinkNameTakenError(link.name, link, undefined, owner);
  }
  for (const link of grouped) {
    const owner = others.find((record) => record.holds(link));
    if (owner) {
      if (options.ownRecords) throw new NamespaceHeldError(namespacePath, owner, link);
      throw new LinkNameTakenError(link.name, link, undefined, owner, namespacePath);
    }
    if (ours.some((record) => record.holds(link))) continue;
    const [recorded] = others;
    if (recorded) throw new NamespaceHeldError(namespacePath, recorded);
    throw new UnrecordedGroupLinkError(namespacePath, link);
  }
  // The `existing` model's macvtap is the pod's own (in no group): a record naming the namespace holds it.
  if (!links.some((link) => link.kind === 'macvtap' && !ours.some((record) => record.holds(link)))) return;
  const [recorded] = others;
  if (recorded) throw new NamespaceHeldError(namespacePath, recorded);
}
