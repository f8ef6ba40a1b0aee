/**
 * DEL of vcnet-cni: undo exactly what ADD recorded, in the namespace it recorded. A DEL must not fail
 * for what is already gone or unreadable (the runtime would retry forever and never free the pod's
 * address): a gone namespace drops the record, an unreadable record is set aside and what it owned
 * is collected as `vcnet gc` would.
 */
import { lstatSync, statfsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { VcnetError } from '../errors.js';
import { NSFS_MAGIC } from '../namespace-file.js';
import { isHostNamespace } from '../netns/host-namespace.js';
import { describeUnseen, NamespaceUnseenError } from '../netns/namespace-holders.js';
import {
  isLaterNamespaceOfSameInode,
  NamespaceChangedError,
  NamespaceGoneError,
  type OpenedNamespace,
  openNetworkNamespace,
  RecordedIdentityDamagedError,
} from '../netns/namespace-identity.js';
import { collectGarbageInOpened } from '../network/garbage-collector.js';
import type { GarbageItem } from '../network/gc/report.js';
import { lockRecordedNamespace, openRecordedNetwork, type RecordedNetwork } from '../network/recorded-network.js';
import { earlierBootReason, RecordFromEarlierBootError } from '../network/state/boot-id.js';
import { salvageNamespace } from '../network/state/record-envelope.js';
import { detachRecorded } from '../sandbox/recorded.js';
import { noticeStillInUse } from '../sandbox/still-in-use.js';
import { shellWord } from '../shell-word.js';
import type { CniEnvironment } from './config.js';
import { commandSubject, type Warn, warningLine, warnOnStandardError } from './notices.js';
import { type CniDeleteRequest, DEL_AGAIN, sandboxKey, storeOf } from './request.js';
import { type AttachmentStore, CNI_LOCK_TIMEOUT_HINT, type CniAttachmentState } from './state.js';

/**
 * Undoes what ADD recorded. Nothing recorded, or the namespace gone: nothing to do, and no error.
 * An unreadable record is set aside (see setAsideUnreadable), never a reason to fail.
 */
export async function del(request: CniDeleteRequest, warn: Warn = warnOnStandardError): Promise<void> {
  const { environment, config } = request;
  const store = storeOf(request);
  // Looked up before the lock, since taking it makes <stateDir>/.locks: a DEL with nothing to undo
  // must succeed without making anything (the stateDir may be unusable, or the default one of
  // undecodable input). A lock file there may be an ADD under way: wait for it, then look again.
  // A container directory without a record is what a killed ADD or DEL left: tidied under the lock.
  if (!store.hasRecord() && !store.hasLockFile() && !store.hasContainerDirectory()) return;
  await store.withLock(async () => {
    let state: CniAttachmentState | undefined;
    try {
      state = store.read();
    } catch (error) {
      if (!(error instanceof VcnetError)) throw error;
      warn(await setAsideUnreadable(store, request, error));
      return;
    }
    if (!state) {
      // The container's directory and its lock file go after this, once nothing else is in it.
      store.removeLeftovers();
      return;
    }
    // Everything ADD made lives in the pod namespace and went with it (a new namespace at the same
    // path is somebody else's and is not touched).
    let recorded: RecordedNetwork;
    try {
      recorded = openRecordedNetwork(state, sandboxKey(environment), store.statePath);
    } catch (error) {
      // The namespace is the recorded one by its cookie, but the record's inode is wrong: damaged.
      if (error instanceof RecordedIdentityDamagedError) {
        warn(await setAsideUnreadable(store, request, error));
        return;
      }
      if (error instanceof NamespaceUnseenError) {
        // No CAP_SYS_PTRACE (or /proc's hidepid=): whether something still holds the recorded
        // namespace cannot be told. When the runtime says it is gone, DEL succeeds (CNI: a DEL of
        // what no longer exists succeeds): refusing would stop the chain here on every retry, and
        // the IPAM plugin's DEL would never free the pod's address.
        const gone = namespaceGoneByRuntime(environment.namespacePath);
        if (gone === undefined) throw withRelativeNetnsHint(error, environment.namespacePath, store.statePath);
        store.remove();
        warn(droppedUnseenWarning(environment, store.statePath, error, gone));
        return;
      }
      if (!(error instanceof NamespaceGoneError || error instanceof NamespaceChangedError)) throw error;
      store.remove();
      // Said: the plumbing is not undone, as nothing the record names is this boot's.
      if (error instanceof RecordFromEarlierBootError)
        warn(
          warningLine(
            commandSubject('DEL', sandboxKey(environment)),
            `dropped the record ${store.statePath}, touching nothing: ${earlierBootReason(error.earlier)}`,
          ),
        );
      return;
    }
    const { network } = recorded;
    try {
      // As `vcnet detach`: no ADD or attach adds a link to vcnet's group while this DEL undoes.
      await lockRecordedNamespace(recorded, state, config.lockTimeoutMs, { howToWaitLonger: CNI_LOCK_TIMEOUT_HINT });
      // A runtime that DELs before it stops the VM (or after `ip netns del`) is told so on stderr, as
      // `vcnet detach` tells it; the DEL still removes everything (it must succeed).
      await noticeStillInUse(recorded, {
        operation: 'DEL',
        sandbox: sandboxKey(environment),
        named: `container ${environment.containerId}`,
        madeBy: 'ADD',
        stopTheVm: "Stop the VM before the runtime's DEL of its network",
        namespacePath: state.namespace.path,
      });
      await detachRecorded(
        network,
        `DEL of ${environment.interfaceName}`,
        {
          persist: () => store.write({ ...state, network: network.save() }),
          discard: () => store.remove(),
          path: store.statePath,
        },
        { finishedBy: DEL_AGAIN },
      );
    } finally {
      recorded.close();
    }
  }, config.lockTimeoutMs);
}

/**
 * Why the runtime says the pod namespace is gone: CNI_NETNS empty (the CNI spec lets a runtime pass
 * none on DEL when the namespace is gone), or an absolute path that does not exist or is a file left
 * where the namespace was mounted. undefined when
 * it names something that exists, or that cannot be looked at (EACCES: it may exist): the runtime
 * then still has the namespace, and what vcnet-cni made may live in it. A relative path never says
 * gone: it resolves from vcnet-cni's cwd, which is not the runtime's (`ns/net` from the wrong
 * directory names nothing while the namespace it meant lives on).
 */
function namespaceGoneByRuntime(path: string | undefined): string | undefined {
  if (!path) return 'CNI_NETNS is empty';
  if (!isAbsolute(path)) return undefined;
  try {
    // A regular file off nsfs is the mount point a runtime unmounted and did not unlink (a crash in
    // between): it holds no namespace, and containerd takes it for a closed one.
    if (lstatSync(path).isFile() && statfsSync(path).type !== NSFS_MAGIC)
      return `CNI_NETNS ${path} is a regular file, not a network namespace (its mount is gone)`;
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? `CNI_NETNS ${path} does not exist` : undefined;
  }
}

/** DEL's refusal for an unseen namespace, saying why a relative CNI_NETNS did not count as gone. */
function withRelativeNetnsHint(
  error: NamespaceUnseenError,
  path: string | undefined,
  statePath: string,
): NamespaceUnseenError {
  if (!path || isAbsolute(path)) return error;
  return new NamespaceUnseenError(
    error.recorded,
    statePath,
    error.unseen,
    `CNI_NETNS ${JSON.stringify(path)} is a relative path, which vcnet-cni resolves from its own working directory, not the runtime's, so it cannot say the namespace is gone: pass the absolute path (or an empty CNI_NETNS once the namespace is gone)`,
  );
}

/** DEL's warning when it dropped a record whose namespace the runtime says is gone, unseen by vcnet-cni. */
function droppedUnseenWarning(
  environment: CniEnvironment,
  statePath: string,
  error: NamespaceUnseenError,
  gone: string,
): string {
  const { recorded, unseen } = error;
  return warningLine(
    commandSubject('DEL', sandboxKey(environment)),
    `dropped the record ${statePath}: ${gone}, and the namespace it names (${recorded.path}, inode ${recorded.ino}) is not at its path, while whether some process still holds it cannot be told (${describeUnseen(unseen)}); everything vcnet-cni made for ${environment.interfaceName} lives in that namespace and goes with it once its last holder exits. Should a VMM still hold it, \`vcnet gc --netns /proc/PID/ns/net\` (as root with CAP_SYS_PTRACE) removes what no record owns there`,
  );
}

/**
 * A record DEL cannot read (damaged, empty, from an older vcnet) must not fail DEL: the runtime
 * would retry forever and never reach the IPAM plugin's DEL, leaking the pod's address. It is
 * renamed beside itself for an operator to look at; what vcnet made for this interface in
 * CNI_NETNS then has no owner, and is removed as `vcnet gc` would (other interfaces' records still
 * own theirs). Returns the one warning line that says what was done.
 */
async function setAsideUnreadable(store: AttachmentStore, request: CniDeleteRequest, problem: Error): Promise<string> {
  const { environment, config } = request;
  const line = (message: string) => warningLine(commandSubject('DEL', sandboxKey(environment)), message);
  // A record whose inode is damaged names no other namespace: its cookie proved it is CNI_NETNS's.
  const text = problem instanceof RecordedIdentityDamagedError ? undefined : store.readTextIfAny();
  let aside: string;
  try {
    aside = store.setAside();
  } catch (error) {
    return line(
      `the record is unreadable (${problem.message}) and could not be set aside (${(error as Error).message}); nothing was removed`,
    );
  }
  const cleaned = await collectUnowned(environment.namespacePath, text, config.stateDirectory);
  return line(`set aside the unreadable record ${store.statePath} as ${aside} (${problem.message}); ${cleaned}`);
}

/** `vcnet gc` limited to CNI_NETNS, when that is still a pod namespace (never the plugin's own); says what it did. */
async function collectUnowned(path: string | undefined, recordText: string | undefined, stateDirectory: string) {
  if (!path) return 'no CNI_NETNS, nothing else to remove';
  // A record that still tells its namespace says which one its plumbing is in.
  const recorded = recordText === undefined ? undefined : salvageNamespace(recordText);
  let opened: OpenedNamespace;
  try {
    // One socket in this namespace (issue 10): the one its cookie is read on, which gc then works through.
    opened = openNetworkNamespace(path, 'CNI_NETNS', 'refuse');
  } catch (error) {
    return `CNI_NETNS is not a namespace now (${(error as Error).message}), nothing else to remove`;
  }
  try {
    if (isHostNamespace(opened.entryPath))
      return `CNI_NETNS ${path} is the plugin's own namespace: nothing removed there`;
    // A record that names another namespace: its plumbing is not in this one.
    if (recorded && (recorded.dev !== opened.identity.dev || recorded.ino !== opened.identity.ino))
      return `the record named another namespace than CNI_NETNS ${path}: nothing removed there`;
    // The same inode, another cookie: the recorded namespace is gone, and the kernel gave its inode
    // to this later one (the one rule of detach, list and gc). What vcnet made went with the recorded one.
    if (recorded && isLaterNamespaceOfSameInode(recorded, opened.identity))
      return `the record named the namespace with inode ${recorded.ino} and cookie ${recorded.cookie}, which is gone: CNI_NETNS ${path} is a later namespace that got its inode (cookie ${opened.identity.cookie}), so nothing removed there`;
    try {
      // Through the fd and socket opened here: gc looks at exactly the namespace checked above.
      const report = await collectGarbageInOpened(opened, { stateDirectories: [stateDirectory] });
      const removed = report.removed.filter((item) => item.kind !== 'state').map(describeRemoved);
      const failures = report.failures.map((failure) => failure.reason);
      const busy = report.withheld.find((entry) => entry.beingChanged);
      // What gc leaves (a rate limit's htb no record claims and no redirect leads to, Kata's shape
      // too) stays in the pod: said with gc's reason and its command, named by CNI_NETNS, not the fd.
      const leftAlone = report.leftAlone.map(
        (item) =>
          `left ${item.kind} ${item.kind === 'link' ? '' : 'on '}${item.name}: ${item.detail.replaceAll(opened.entryPath, shellWord(path))}`,
      );
      return [
        removed.length > 0
          ? `removed ${removed.join(', ')} (no record owns ${removed.length === 1 ? 'it' : 'them'}) in ${path}`
          : busy
            ? `${path} not looked into: ${busy.reason ?? 'another command is changing it'}`
            : `nothing unowned in ${path}`,
        ...leftAlone,
        ...(failures.length > 0 ? [`not removed: ${failures.join('; ')} (run vcnet gc)`] : []),
      ].join('; ');
    } catch (error) {
      return `removing what no record owns in ${path} failed (${(error as Error).message}); run vcnet gc`;
    }
  } finally {
    opened.close();
  }
}

/** One thing gc removed, as DEL's warning names it: `link tap0_kata`, `filter on eth0 (prio 1 ...)`, `ingress qdisc on eth0`. */
function describeRemoved(item: GarbageItem): string {
  if (item.kind === 'link') return `link ${item.name}`;
  if (item.kind === 'filter') return `filter on ${item.name}${item.detail ? ` (${item.detail})` : ''}`;
  // A qdisc's detail starts with what it is ("ingress qdisc (ffff:) with...", "htb root qdisc of a rate limit (...")
  const what = item.detail?.split(' (')[0] ?? 'qdisc';
  return `${what} on ${item.name}`;
}
