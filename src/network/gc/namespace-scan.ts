/**
 * gc's step 1: opens the namespaces to look in and lists their links and qdiscs, before any record is
 * read (an attach journals each link and qdisc before making it, so one listed here is in a record
 * read afterwards).
 * Every live namespace, or only the named ones (`scoped`, --netns), each once by identity. A named
 * path where no namespace is may be a deleted pod's whose records are to go: it is kept in `missing`
 * (or `stale`, when a file without a namespace is left there), and the namespace a record made there
 * is looked at through a process still in it.
 */

import { NamespacePathError } from '../../errors.js';
import { yieldToEventLoop } from '../../event-loop.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { type OpenedNamespace, openNetworkNamespace, pathNoLongerHolds } from '../../netns/namespace-identity.js';
import { holdsCookie, keyOf, type NamespaceKey } from '../../netns/namespace-liveness.js';
import { type RecordOwner, readOwners } from '../state/owners.js';
import type { NamespaceScan } from './orphan-links.js';

/** A named path that is there but is no namespace (NamespacePathError.what says what it is). */
export interface StalePath {
  /** Resolved. */
  path: string;
  /** As given (--netns). */
  given: string;
  what: string;
}

export interface ScanScope {
  /** Live namespaces by identity (liveNamespaces), scanned when none is named. */
  live: ReadonlyMap<NamespaceKey, string>;
  /** The named paths, resolved; undefined: every live namespace. */
  scoped: readonly string[] | undefined;
  /** The named paths as they were given, in the same order. */
  given: readonly string[] | undefined;
  /** The state directories whose records say where a missing path's namespace went. */
  directories: readonly string[];
  /** Where a namespace of this key is held (a /var/run/netns entry, a process). */
  holdersOf: (key: NamespaceKey) => string[];
  signal: AbortSignal | undefined;
  /** A namespace the caller opened, scanned through its socket when its entryPath is named (closed with the scans). */
  opened?: OpenedNamespace | undefined;
}

/**
 * Fills `scans` as it goes (the caller closes them, whatever happens); returns the named paths
 * where no namespace is, resolved and as given (missingAsGiven, in the same order).
 */
export async function scanNamespaces(
  scans: NamespaceScan[],
  { live, scoped, given, directories, holdersOf, signal, opened }: ScanScope,
): Promise<{ missing: string[]; missingAsGiven: string[]; stale: StalePath[] }> {
  /** Named paths that do not exist: only records naming them can be collected (else the path is refused). */
  const missing: string[] = [];
  /** Those paths as they were given (--netns), in the same order. */
  const missingAsGiven: string[] = [];
  /** Named paths that are there but hold no namespace (a file left where one was mounted). */
  const stale: StalePath[] = [];
  const seen = new Set<NamespaceKey>();
  const toScan = [...(scoped ?? live.values())];
  let ownersByPath: RecordOwner[] | undefined;
  // The event loop runs between namespaces (a daemon's timers, a concurrent attach's lock wait);
  // and at least once per gc, so `while (!stop) await collectGarbage()` never starves it.
  await yieldToEventLoop();
  signal?.throwIfAborted();
  for (let position = 0; position < toScan.length; position++) {
    if (position > 0) await yieldToEventLoop();
    signal?.throwIfAborted();
    const path = toScan[position]!;
    let namespace: OpenedNamespace;
    try {
      namespace = opened !== undefined && path === opened.entryPath ? opened : openNetworkNamespace(path);
    } catch (error) {
      // A named path is refused when it is not a network namespace, or cannot be opened; one that
      // does not exist may be the path of a deleted namespace whose records are to go (checked below).
      if (scoped === undefined || position >= scoped.length) continue; // gone meanwhile, or not a network namespace
      if (error instanceof NamespacePathError && pathNoLongerHolds(error.what)) {
        if (error.what === 'missing') {
          missing.push(path);
          missingAsGiven.push(given![position]!);
        } else {
          // An empty file a runtime left when it unmounted the namespace and crashed before the
          // unlink: the records naming it name a namespace that is not there, as for a gone path
          // (one no record names is refused after the records are read: a mistyped path).
          stale.push({ path, given: given![position]!, what: error.what });
        }
        // Only the path may be gone: a process still in the namespace keeps it, and what a record
        // made there, alive; it is looked at through that process (the records read here only say
        // which namespace; the owners are read again after the links are listed).
        ownersByPath ??= readOwners(directories).owners;
        // A holder of the inode whose namespace has another cookie holds a later namespace, not the record's.
        for (const owner of ownersByPath)
          if (owner.namespacePath === path)
            toScan.push(...holdersOf(owner.key).filter((holder) => holdsCookie(holder, owner.cookie)));
        continue;
      }
      throw error;
    }
    const key = keyOf(namespace.identity);
    if (seen.has(key)) {
      namespace.close();
      continue;
    }
    seen.add(key);
    let handle: NetlinkHandle | undefined;
    try {
      // On the socket the namespace's cookie was read on: one socket per namespace scanned.
      handle = namespace.netlinkHandle(namespace.entryPath);
      const links = await handle.links();
      // Also before any record is read, for the same reason: an htb listed here was journaled
      // first, so a record read afterwards claims it if any does (a failed dump: none is looked at).
      const qdiscs = await handle.qdiscs().catch(() => undefined);
      scans.push({ namespace, handle, links, qdiscs });
    } catch {
      handle?.close();
      namespace.close();
    }
  }
  return { missing, missingAsGiven, stale };
}
