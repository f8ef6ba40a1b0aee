/**
 * Whether a network namespace still lives, and where: by its identity (device and inode, and its
 * cookie when both sides know one), never by a path string. gc asks it of every record it reads; the
 * sandbox layer (where a record's namespace lives now) and vcnet-cni (a record whose namespace exists
 * nowhere) ask it too, so it sits in the namespace layer, below them all.
 */
import { join } from 'node:path';
import { safeReaddir } from '../directory-entries.js';
import { type NamespaceHolders, type NamespaceHoldersUnseen, namespaceHolderPaths } from './namespace-holders.js';
import {
  identityOfNamespaceAt,
  isLaterNamespaceOfSameInode,
  type NamespaceIdentity,
  NETNS_RUN_DIRECTORY,
} from './namespace-identity.js';
import { fileIdentity, lookAtFile, processIds } from './processes.js';

/** A namespace's device and inode as a map key (`dev:ino`); identityOfKey reads it back. */
export type NamespaceKey = string;
export const keyOf = (identity: { dev: number; ino: number }): NamespaceKey => `${identity.dev}:${identity.ino}`;
export const identityOfKey = (key: NamespaceKey): { dev: number; ino: number } => {
  const [dev, ino] = key.split(':').map(Number);
  return { dev: dev!, ino: ino! };
};

/** Live network namespaces by identity: /var/run/netns entries first (their paths outlive processes), then /proc/PID/ns/net. */
export function liveNamespaces(): Map<NamespaceKey, string> {
  const found = new Map<NamespaceKey, string>();
  const consider = (path: string) => {
    const identity = fileIdentity(path); // undefined: gone meanwhile, or not readable
    if (identity && !found.has(keyOf(identity))) found.set(keyOf(identity), path);
  };
  for (const name of safeReaddir(NETNS_RUN_DIRECTORY)) consider(join(NETNS_RUN_DIRECTORY, name));
  for (const pid of processIds()) consider(`/proc/${pid}/ns/net`);
  return found;
}

/**
 * Where a namespace of this identity lives now (a /var/run/netns entry or a /proc/PID/ns/net), if
 * anywhere. With a cookie, a holder is it only when its cookie is that one too (or cannot be read):
 * a holder of a later namespace with the same inode means it lives nowhere.
 */
export function whereNamespaceLives(identity: { dev: number; ino: number; cookie?: string }): string | undefined {
  const [first] = namespaceHolderPaths(identity, { threads: false });
  return first === undefined || laterCookieAt(identity, first) !== undefined ? undefined : first;
}

/**
 * The cookie of the namespace at `path` when it is a later one that got `recorded`'s freed inode
 * (isLaterNamespaceOfSameInode), else undefined. Reads the cookie (a probe socket) only when
 * `recorded` has one to compare.
 */
function laterCookieAt(
  recorded: { dev: number; ino: number; cookie?: string },
  path: string,
  cookies?: NamespaceCookies,
): string | undefined {
  if (recorded.cookie === undefined) return undefined;
  const key = keyOf(recorded);
  let cookie: string | undefined;
  if (cookies?.has(key)) cookie = cookies.get(key);
  else {
    cookie = cookieAt(path, key);
    cookies?.set(key, cookie);
  }
  return isLaterNamespaceOfSameInode(recorded, { ...recorded, cookie }) ? cookie : undefined;
}

/**
 * The cookies one look (a `vcnet list` run) read, by device and inode: no two live namespaces share
 * those, so the records naming one namespace (a pod's vcnet-cni records, one per interface) cost one
 * probe socket there, not one each. undefined: none could be read.
 */
export type NamespaceCookies = Map<NamespaceKey, string | undefined>;

/** Where a record's namespace is now, as placeOfRecordedNamespace tells it. */
export type RecordedNamespacePlace =
  /** At its recorded path (its cookie too, when both are known). */
  | { at: 'path' }
  /** The recorded path no longer holds it, something else does (another /var/run/netns entry, a process, a mount, an fd). */
  | { at: 'elsewhere'; heldAt: string }
  /** Nowhere: nothing holds it; `laterCookie` when a later namespace has its inode (at its path or elsewhere). */
  | { at: 'nowhere'; laterCookie?: string }
  /** Not at its path, and nothing seen holds it, but not everything could be looked at. */
  | { at: 'unseen'; unseen: NamespaceHoldersUnseen };

/**
 * Where a record's namespace lives now, told without entering it for work: a stat of its path and,
 * when that is not it, the holder search detach reaches it through (`holders`, shared by every
 * record of one listing, lists each place once); a holder's cookie is read (a probe socket, closed
 * at once) only when the record has one to compare, once per namespace when `cookies` is shared.
 */
export function placeOfRecordedNamespace(
  recorded: NamespaceIdentity,
  holders: NamespaceHolders,
  cookies?: NamespaceCookies,
): RecordedNamespacePlace {
  if (pathHolds(recorded.path, keyOf(recorded))) {
    const laterCookie = laterCookieAt(recorded, recorded.path, cookies);
    return laterCookie === undefined ? { at: 'path' } : { at: 'nowhere', laterCookie };
  }
  const [heldAt] = holders.of(recorded);
  if (heldAt !== undefined) {
    const laterCookie = laterCookieAt(recorded, heldAt, cookies);
    return laterCookie === undefined ? { at: 'elsewhere', heldAt } : { at: 'nowhere', laterCookie };
  }
  const unseen = holders.unseen();
  if (lookAtFile(recorded.path) === 'refused')
    return { at: 'unseen', unseen: { processes: [], ...unseen, paths: [...(unseen?.paths ?? []), recorded.path] } };
  return unseen === undefined ? { at: 'nowhere' } : { at: 'unseen', unseen };
}

/**
 * The cookie of the network namespace at `path` (only when its device and inode are `key`, given):
 * undefined when none can be opened there (gone meanwhile, not a network namespace), when it is
 * another one than `key`, or when the kernel tells no cookies.
 */
export function cookieAt(path: string, key?: NamespaceKey): string | undefined {
  let identity: NamespaceIdentity;
  try {
    identity = identityOfNamespaceAt(path);
  } catch {
    return undefined;
  }
  return key === undefined || keyOf(identity) === key ? identity.cookie : undefined;
}

/**
 * Whether the namespace at `path` may be the one with this cookie (unknown on either side: may be;
 * one that cannot be opened is looked at as before: the scan opens it again, or skips it).
 */
export function holdsCookie(path: string, cookie: string | undefined): boolean {
  if (cookie === undefined) return true;
  const found = cookieAt(path);
  return found === undefined || found === cookie;
}

/** Whether `path` still names the namespace with this key (a path gc did not scan, e.g. a custom bind mount). */
export function pathHolds(path: string, key: NamespaceKey): boolean {
  const identity = fileIdentity(path);
  return identity !== undefined && keyOf(identity) === key;
}
