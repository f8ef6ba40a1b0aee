/**
 * A record vcnet cannot read: what gc does with it (decideUnreadable, the one decision gc acts on and
 * `vcnet list` states), and what a person can do about one gc keeps, said the same by both. gc drops
 * such a record by itself only when it still tells an earlier boot, or its namespace's device, inode
 * and path and that namespace is gone (gone-records.ts). Otherwise only the person knows whether its
 * sandbox still runs: gc never guesses, so the text says what to look at and which commands settle it.
 */
import type { NamespaceHoldersUnseen } from '../../netns/namespace-holders.js';
import { identityOfNamespaceAt, type NamespaceIdentity } from '../../netns/namespace-identity.js';
import { shellWord } from '../../shell-word.js';
import { type EarlierBoot, earlierBootOfDamaged } from './boot-id.js';
import { gcStateDirectoryFlag } from './default-directories.js';
import { salvageBoot, salvageNamespace, salvageNamespacePath } from './record-envelope.js';

/** Whose record it is: the sandbox id (its directory's name), or a vcnet-cni container and interface. */
export interface UnreadableRecordOwner {
  file: string;
  /** The sandbox id, or the vcnet-cni container id. */
  id: string;
  interfaceName?: string;
}

/**
 * The command that sets a record aside beside itself, as vcnet-cni's DEL does with one it cannot
 * read: gc and list read only `state.json`, so nothing is destroyed and nothing reads it any more.
 */
export function setAsideCommand(file: string): string {
  return `mv ${shellWord(file)} ${shellWord(`${file}.unreadable`)}`;
}

/**
 * How a person settles a record gc will keep (a clause, no leading separator): restore it while its
 * sandbox runs; once it is gone, set it aside and let gc collect what it left in `namespacePath`
 * (when known: else gc lists vcnet's links in a namespace no record names as unclaimed).
 */
export function settleByHand(owner: UnreadableRecordOwner, namespacePath: string | undefined): string {
  const { file, id, interfaceName } = owner;
  const stateDirectory = gcStateDirectoryFlag(file);
  const collect =
    namespacePath === undefined
      ? `\`vcnet gc --dry-run${stateDirectory}\` then lists the vcnet links it left where no record names their namespace as unclaimed, and \`vcnet gc --netns <that namespace>${stateDirectory}\` removes them`
      : `\`vcnet gc --netns ${shellWord(namespacePath)}${stateDirectory}\` removes what it left there`;
  const setAside = `set the record aside (\`${setAsideCommand(file)}\`) and ${collect}`;
  if (interfaceName !== undefined)
    return `the runtime's CNI DEL of container ${id} (interface ${interfaceName}) sets the record aside and removes what it made; if the container is gone and no DEL will come, ${setAside}`;
  return `restore the file if sandbox ${id} still runs; once it is gone (its VM stopped), ${setAside}`;
}

/** The device and inode of a record's namespace, with its cookie when that is whole. */
type ToldIdentity = Pick<NamespaceIdentity, 'dev' | 'ino' | 'cookie'>;

/** What a record vcnet cannot read still tells of itself, each part only when whole. */
export interface ToldByUnreadable {
  /** Its boot id and creation time both tell an earlier boot (earlierBootOfDamaged). */
  earlier?: EarlierBoot;
  /** Its namespace's device and inode, with its cookie when whole (salvageNamespace: only with a whole path). */
  identity?: ToldIdentity;
  /** The path of its namespace (salvageNamespacePath). */
  path?: string;
}

/** What the text of a record vcnet cannot read still tells (see ToldByUnreadable). */
export function toldByUnreadable(text: string): ToldByUnreadable {
  const earlier = earlierBootOfDamaged(salvageBoot(text));
  const path = salvageNamespacePath(text);
  // The identity's own path is checked with it: it is read only from a whole namespace object.
  const identity = path === undefined ? undefined : salvageNamespace(text);
  return {
    ...(earlier ? { earlier } : {}),
    ...(identity ? { identity } : {}),
    ...(path !== undefined ? { path } : {}),
  };
}

/** Where the namespace a record still tells (device, inode, path) is now, as its reader looked. */
export type UnreadableNamespaceWhereabouts =
  /** Something holds it (its path, a /var/run/netns entry, a process, a mount, an fd: `heldAt` when not its path). */
  | { at: 'there'; heldAt?: string }
  /** Nothing holds its inode, or a later namespace with another cookie has it (`laterCookie`). */
  | { at: 'nowhere'; laterCookie?: string }
  /** Nothing vcnet could see holds it, but it could not look everywhere. */
  | { at: 'unseen'; unseen: NamespaceHoldersUnseen };

/**
 * What gc does with a record it cannot read: the one decision `vcnet gc` acts on (state/owners.ts
 * when it reads the record, gc/gone-records.ts once it looked for its namespace) and `vcnet list`
 * states in its hint.
 * - `drop` `earlier-boot`: its boot id and creation time both tell an earlier boot; dropped as a
 *   readable record of an earlier boot, protecting nothing (its inode may be a new pod's namespace).
 * - its namespace's device, inode and path whole: kept while that namespace is there, vcnet's links
 *   there left alone (`keep` `namespace-there`); dropped once it is gone (`drop` `namespace-gone`);
 *   kept when where it is cannot be told (`keep` `namespace-unseen`). Without `whereabouts` (gc's
 *   read, before it looks) this is `drop-once-gone`.
 * - only a path, where a namespace is now (`keep` `path-only`, `namespaceThere`): that namespace left
 *   alone; never dropped, as "nothing holds it" cannot be told with no inode.
 * - neither (`keep` `unknown`; `pathError`: why its path holds no namespace): every namespace is
 *   left alone while it is there, as it may be any live sandbox's record.
 */
export type UnreadableDecision =
  | { action: 'drop'; because: 'earlier-boot'; earlier: EarlierBoot; path?: string }
  | { action: 'drop-once-gone'; identity: ToldIdentity; path: string }
  | { action: 'drop'; because: 'namespace-gone'; identity: ToldIdentity; path: string; laterCookie?: string }
  | { action: 'keep'; because: 'namespace-there'; identity: ToldIdentity; path: string; heldAt?: string }
  | {
      action: 'keep';
      because: 'namespace-unseen';
      identity: ToldIdentity;
      path: string;
      unseen: NamespaceHoldersUnseen;
    }
  | { action: 'keep'; because: 'path-only'; path: string; namespaceThere: NamespaceIdentity }
  | { action: 'keep'; because: 'unknown'; path?: string; pathError?: string };

/** How decideUnreadable looks at the system. */
export interface UnreadableLook {
  /** The namespace at `path` now; throws when none is there. Default identityOfNamespaceAt. */
  namespaceAt?: (path: string) => NamespaceIdentity;
  /** Where the namespace of `identity` recorded at `path` is now; without it, `drop-once-gone`. */
  whereabouts?: (identity: ToldIdentity, path: string) => UnreadableNamespaceWhereabouts;
}

/** What gc does with a record it cannot read, from what it still tells (see UnreadableDecision). */
export function decideUnreadable(told: ToldByUnreadable, look: UnreadableLook = {}): UnreadableDecision {
  const { earlier, identity, path } = told;
  if (earlier) return { action: 'drop', because: 'earlier-boot', earlier, ...(path !== undefined ? { path } : {}) };
  if (path === undefined) return { action: 'keep', because: 'unknown' };
  if (identity) {
    const found = look.whereabouts?.(identity, path);
    if (found === undefined) return { action: 'drop-once-gone', identity, path };
    if (found.at === 'there')
      return {
        action: 'keep',
        because: 'namespace-there',
        identity,
        path,
        ...(found.heldAt ? { heldAt: found.heldAt } : {}),
      };
    if (found.at === 'unseen')
      return { action: 'keep', because: 'namespace-unseen', identity, path, unseen: found.unseen };
    const later = found.laterCookie === undefined ? {} : { laterCookie: found.laterCookie };
    return { action: 'drop', because: 'namespace-gone', identity, path, ...later };
  }
  try {
    const namespaceThere = (look.namespaceAt ?? identityOfNamespaceAt)(path);
    return { action: 'keep', because: 'path-only', path, namespaceThere };
  } catch (error) {
    return { action: 'keep', because: 'unknown', path, pathError: (error as Error).message };
  }
}
