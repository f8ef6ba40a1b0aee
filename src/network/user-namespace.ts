/**
 * Whether vcnet runs in the initial user namespace, and what the macvtap model cannot do outside it.
 *
 * A macvtap's character device (/dev/tapN) is made by devtmpfs, owned by the initial namespace's
 * root: in another user namespace (rootless podman, a user-namespaced container) it shows as owned
 * by the overflow uid and nobody inside may open it, so a VM could never use the NIC attach made.
 */
import { readFileSync } from 'node:fs';
import { InvalidInputError } from '../errors.js';

/** /proc/self/uid_map of the initial user namespace: all 2^32 uids mapped onto themselves. */
const INITIAL_UID_MAP = /^\s*0\s+0\s+4294967295\s*$/;

/**
 * Whether this process is in the initial user namespace (its uid_map maps every uid onto itself);
 * true when that cannot be read (no /proc: nothing to refuse on a guess).
 */
export function inInitialUserNamespace(uidMap?: string): boolean {
  let text = uidMap;
  try {
    text ??= readFileSync('/proc/self/uid_map', 'utf8');
  } catch {
    return true;
  }
  return INITIAL_UID_MAP.test(text.trim());
}

/**
 * Refuses the macvtap model when vcnet runs in a user namespace other than the initial one, before
 * anything is made: the /dev/tapN it would hand the VMM cannot be opened there. `field` names where
 * the model was set (--model, the CNI config's model, NetworkConfig.model).
 */
export function refuseMacvtapInUserNamespace(model: string | undefined, field: string, uidMap?: string): void {
  if (model !== 'macvtap' || inInitialUserNamespace(uidMap)) return;
  // A flag is the CLI's: its hint names flags; an option (NetworkConfig's, the CNI config's) names options.
  const cli = field.startsWith('--');
  throw new InvalidInputError(
    field,
    model,
    `tcfilter or none ${MACVTAP_UNUSABLE}`,
    `use model tcfilter in a user namespace (${cli ? `${field} tcfilter` : `${field}: 'tcfilter'`}): its tap is opened by name, and ${cli ? '--tap-owner' : 'tapOwner'} gives it to the VMM's user`,
  );
}

const MACVTAP_UNUSABLE =
  'in a user namespace other than the initial one (/proc/self/uid_map is not "0 0 4294967295"): the /dev/tapN node of a macvtap belongs to the host\'s root, and nobody in this user namespace may open it';

/**
 * Refuses a pod link that is itself a macvtap (attach, add-iface and watch take it as it is, and hand
 * the VMM its /dev/tapN) when vcnet runs outside the initial user namespace, as the macvtap model is
 * refused: called when its endpoint is chosen, before anything is made for it.
 */
export function refuseMacvtapLinkInUserNamespace(link: string, uidMap?: string): void {
  if (inInitialUserNamespace(uidMap)) return;
  throw new InvalidInputError(
    'interface',
    link,
    `a link other than a macvtap ${MACVTAP_UNUSABLE}`,
    `give the pod a veth or macvlan instead of the macvtap ${link}, which model tcfilter (the default) connects through a tap opened by name (a tap owner, the CLI's --tap-owner or the library's tapOwner, gives it to the VMM's user), or run vcnet in the initial user namespace`,
  );
}

/**
 * Whether no vcnet command may attach `link` where this process runs: a macvtap pod link outside the
 * initial user namespace, which attach, add-iface and watch refuse alike (refuseMacvtapLinkInUserNamespace).
 */
export function macvtapLinkRefusedHere(link: { kind?: string | undefined }, uidMap?: string): boolean {
  return link.kind === 'macvtap' && !inInitialUserNamespace(uidMap);
}

/**
 * What works for pod links `names` that macvtapLinkRefusedHere: not add-iface (it refuses them as
 * well), but a veth or macvlan in their place, which model tcfilter connects.
 */
export function refusedMacvtapAdvice(names: readonly string[]): string {
  const several = names.length > 1;
  return `${names.join(', ')} ${several ? 'are macvtaps' : 'is a macvtap'}, which vcnet cannot attach in a user namespace other than the initial one (add-iface refuses ${several ? 'them' : 'it'} too): give the pod a veth or macvlan instead, which model tcfilter connects`;
}

/** The uid a file of a user this user namespace does not map shows as (/proc/sys/kernel/overflowuid). */
function overflowUid(): number {
  try {
    const uid = Number(readFileSync('/proc/sys/kernel/overflowuid', 'utf8').trim());
    return Number.isInteger(uid) ? uid : 65534;
  } catch {
    return 65534;
  }
}

/**
 * Whether a file owned by `uid` belongs to a user outside this user namespace: it shows as the
 * overflow uid, and vcnet is not in the initial user namespace. Nobody inside can chown such a file.
 */
export function ownedOutsideUserNamespace(uid: number, uidMap?: string, overflow = overflowUid()): boolean {
  return uid === overflow && !inInitialUserNamespace(uidMap);
}

/** How an owner outside this user namespace is named in messages. */
export const outsideOwner = (uid: number, mode: string): string =>
  `a user outside this user namespace (shown as uid ${uid}; mode ${mode})`;

/** Where to put vcnet's state instead, in a user namespace: a directory this user owns. */
export const USER_NAMESPACE_STATE_HINT =
  "nobody in this user namespace can chown it: put the state directory (--state-dir, VCNET_STATE_DIR, vcnet-cni's stateDir) and VCNET_STATE_REGISTRY under a directory this user owns, e.g. $XDG_RUNTIME_DIR/vcnet (--state-dir $XDG_RUNTIME_DIR/vcnet/sandboxes, VCNET_STATE_REGISTRY=$XDG_RUNTIME_DIR/vcnet/state-directories)";
