/**
 * ADD, DEL and CHECK of vcnet-cni: give CNI_IFNAME (made by the plugin before, e.g. bridge) to a VM
 * with the configured internetworking model, undo exactly that, and verify it is still in place.
 * Only CNI_IFNAME is attached, never the rest of the namespace (other chains own other interfaces).
 */

import { lstatSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { type DetachFinishedBy, RollbackIncompleteError, VcnetError } from '../errors.js';
import { InterfaceFlag } from '../netlink/codec/link/message.js';
import type { Link } from '../netlink/codec/link.js';
import { formatHandle } from '../netlink/codec/tc/message.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { isHostNamespace } from '../netns/namespace.js';
import {
  damagedIdentityField,
  describeUnseen,
  NamespaceChangedError,
  NamespaceGoneError,
  NamespacePathError,
  NamespaceUnseenError,
  type OpenedNamespace,
  openNamespaceForRecord,
  openNetworkNamespace,
  RecordedIdentityDamagedError,
  sameNamespace,
} from '../netns/namespace-identity.js';
import { namespaceExistsNowhere } from '../netns/namespace-liveness.js';
import { ConfigurationConflictError, type NetworkConfig } from '../network/config.js';
import { loopbackRefused } from '../network/endpoint/create-endpoint.js';
import { collectGarbage, type GarbageItem } from '../network/garbage-collector.js';
import { freeDeviceIndex } from '../network/interface-pair.js';
import { isUnfinished } from '../network/model/plumbing-context.js';
import { Network } from '../network/network.js';
import { linkResolver } from '../network/plan/plan-detach.js';
import type { PlumbingStep } from '../network/plumbing.js';
import { interfacesOf, loopbackNames } from '../network/scan.js';
import { removeMadeDirectories } from '../network/state/directory.js';
import { salvageNamespace } from '../network/state/record-envelope.js';
import { refuseUnusableRecordEnvironment } from '../network/state/store.js';
import { refuseMacvtapInUserNamespace } from '../network/user-namespace.js';
import { lockNamespace, refuseHeldNamespace } from '../sandbox/namespace-hold.js';
import {
  attachRecorded,
  detachRecorded,
  lockRecordedNamespace,
  openRecordedNetwork,
  type RecordedNetwork,
  type RecordKeeper,
} from '../sandbox/service.js';
import { shellWord } from '../shell-word.js';
import {
  type CniConfig,
  type CniEnvironment,
  type CniInterface,
  type PreviousResult,
  requirePreviousResult,
} from './config.js';
import { CniEnvironmentError, CniError, CniErrorCode } from './errors.js';
import { commandSubject, type Warn, warningLine, warnOnStandardError } from './notices.js';
import {
  type AttachedDevice,
  AttachmentStore,
  CNI_LOCK_TIMEOUT_HINT,
  CNI_STATE_VERSION,
  type CniAttachmentState,
  prepareStateDirectory,
} from './state.js';

/** What finishes a DEL (or a failed ADD's undo) the kernel refused in part: the runtime retries DEL. */
const DEL_AGAIN: DetachFinishedBy = {
  again: "the runtime's next DEL of this container and interface finishes it (what is already gone is skipped)",
  next: "the runtime's next DEL",
};

export interface CniRequest {
  environment: CniEnvironment;
  config: CniConfig;
}

/** The CNI result printed by ADD: the previous result plus the VM's device. */
export type CniResult = PreviousResult & { cniVersion: string; interfaces: CniInterface[] };

/** DEL reads only where the attachment is recorded, never the rest of the config (see parseDeleteTarget). */
export interface CniDeleteRequest {
  environment: CniEnvironment;
  config: Pick<CniConfig, 'stateDirectory' | 'lockTimeoutMs'>;
}

function storeOf({ environment, config }: CniDeleteRequest): AttachmentStore {
  return new AttachmentStore(config.stateDirectory, environment.containerId, environment.interfaceName);
}

/** How the network layer names this attachment in logs, spans and pair ids. */
function sandboxKey(environment: CniEnvironment): string {
  return `${environment.containerId}/${environment.interfaceName}`;
}

/**
 * CNI_NETNS must be a namespace that exists and is not the plugin's own (never plumb the host).
 * It is opened once (without blocking on a FIFO) and used through that fd; `path` is the one the
 * runtime gave, `opened.identity` what is recorded.
 */
function usableNamespace(path: string | undefined): { path: string; opened: OpenedNamespace } {
  if (!path) throw new CniEnvironmentError('CNI_NETNS', path, 'an existing network namespace');
  let opened: OpenedNamespace;
  try {
    opened = openNamespaceForRecord(path, 'CNI_NETNS');
  } catch (error) {
    if (error instanceof NamespacePathError)
      throw new CniEnvironmentError('CNI_NETNS', path, 'an existing network namespace', error.problem);
    throw error;
  }
  if (isHostNamespace(opened.entryPath)) {
    opened.close();
    throw new CniEnvironmentError('CNI_NETNS', path, 'a pod namespace, not the one vcnet-cni itself runs in');
  }
  return { path, opened };
}

export async function add(request: CniRequest, warn: Warn = warnOnStandardError): Promise<CniResult> {
  const { config } = request;
  const previous = requirePreviousResult(config, 'ADD');
  // Before the state directory is made: a macvtap nobody in this user namespace may open, and a
  // registry (or VCNET_STATE_DIR) the ADD would refuse once it had made it.
  refuseMacvtapInUserNamespace(config.model, 'model');
  refuseUnusableRecordEnvironment();
  const made = prepareStateDirectory(config.stateDirectory);
  try {
    return await addInStateDirectory(request, previous, warn);
  } catch (error) {
    // A refused ADD (no CAP_SYS_ADMIN to enter CNI_NETNS, a namespace that is not one...) leaves no
    // empty state directory it made; one holding a record (an undo refused) or made before stays.
    removeMadeDirectories(made);
    throw error;
  }
}

async function addInStateDirectory(
  request: CniRequest,
  previous: ReturnType<typeof requirePreviousResult>,
  warn: Warn,
): Promise<CniResult> {
  const { environment, config } = request;
  const namespace = usableNamespace(environment.namespacePath);
  const store = storeOf(request);
  return store
    .withLock(async () => {
      let existing = store.read();
      if (
        existing &&
        !sameNamespace(existing.namespace, namespace.opened.identity) &&
        namespaceExistsNowhere(existing.namespace)
      ) {
        // A record from before a reboot (a stateDir that outlived /run): its namespace, and all ADD
        // made in it, are gone. Dropped as gc would drop it, and this ADD goes on.
        store.remove();
        warn(
          warningLine(
            commandSubject('ADD', sandboxKey(environment)),
            `removed the stale record ${store.statePath}: its namespace ${existing.namespace.path} (inode ${existing.namespace.ino}) exists nowhere`,
          ),
        );
        existing = undefined;
      }
      if (existing && !existing.device) {
        // The record an ADD keeps while it works: that ADD was killed (or its undo refused) half-way.
        throw new CniError(
          CniErrorCode.ALREADY_ADDED,
          'VCNET_CNI_ALREADY_ADDED',
          `an earlier ADD of ${environment.interfaceName} of container ${environment.containerId} did not complete (its record ${store.statePath} has no device): what it made is still there`,
          {
            value: environment.interfaceName,
            hint: 'DEL this container and interface (it removes what the earlier ADD made), then ADD again',
          },
        );
      }
      if (existing) {
        throw new CniError(
          CniErrorCode.ALREADY_ADDED,
          'VCNET_CNI_ALREADY_ADDED',
          `${environment.interfaceName} of container ${environment.containerId} is already attached (state in ${store.statePath})`,
          { value: environment.interfaceName, hint: 'the runtime must DEL before it ADDs the same interface again' },
        );
      }
      const networkConfig: NetworkConfig = {
        namespacePath: namespace.opened.identity.path,
        model: config.model,
        namespaceCreatedByVcnet: false,
        disableNewNetns: false,
        queues: config.queues,
        vhostNet: 'auto',
        ...(config.tapOwner !== undefined ? { tapOwner: config.tapOwner } : {}),
        ...(config.tapGroup !== undefined ? { tapGroup: config.tapGroup } : {}),
        ...(config.rateLimit ? { rateLimit: config.rateLimit } : {}),
      };
      // One socket and one scan for the whole ADD.
      const network = Network.open(networkConfig, sandboxKey(environment), namespace.opened.entryPath);
      try {
        // Under the namespace's lock, after the container's (as attach): no attach, detach or other
        // container's DEL changes vcnet's links here between this scan and this ADD's last change.
        await lockNamespace(namespace.opened.fd, namespace.path, config.lockTimeoutMs, {
          howToWaitLonger: CNI_LOCK_TIMEOUT_HINT,
        });
        const snapshot = await network.scan();
        // A namespace a `vcnet attach` sandbox (or another container) holds is refused before anything
        // is made; this container's other chains (their records) may have vcnet's links here.
        refuseHeldNamespace(snapshot.links, namespace.opened.identity, namespace.path, [config.stateDirectory], {
          ownRecords: store.containerRecordFiles(),
        });
        const info = interfacesOf(snapshot).find((candidate) => candidate.link.name === environment.interfaceName);
        if (!info) {
          if (loopbackNames(snapshot).includes(environment.interfaceName))
            throw loopbackRefused(environment.interfaceName);
          throw new CniError(
            CniErrorCode.INTERFACE_NOT_FOUND,
            'VCNET_CNI_INTERFACE_NOT_FOUND',
            `no interface ${environment.interfaceName} in ${namespace.path}`,
            {
              value: environment.interfaceName,
              hint: 'vcnet-cni attaches the interface the plugin before it made: list it after bridge, ptp or macvlan',
            },
          );
        }
        const siblings = store.siblings();
        refuseSiblingGuestMac(info.link, siblings);
        const taken = new Set(siblings.flatMap((sibling) => sibling.network.endpoints.map((e) => e.index)));
        const firstIndex = freeDeviceIndex(new Set(snapshot.links.map((link) => link.name)), { taken });
        const createdAt = new Date().toISOString();
        let device: AttachedDevice | undefined;
        const record = (): CniAttachmentState => ({
          version: CNI_STATE_VERSION,
          id: environment.containerId,
          namespace: namespace.opened.identity,
          createdAt,
          interfaceName: environment.interfaceName,
          networkName: config.name,
          ...(device ? { device } : {}),
          network: network.save(),
        });
        const keeper: RecordKeeper = {
          persist: () => store.write(record()),
          discard: () => store.remove(),
          path: store.statePath,
        };
        await store.prepareToRecord();
        const [endpoint] = await attachRecorded(network, { interfaces: [info], firstIndex, snapshot }, keeper).catch(
          (error: unknown) => {
            // There is no sandbox for `vcnet detach` to find here: the CNI record is finished by DEL.
            if (!(error instanceof RollbackIncompleteError)) throw error;
            throw error.retold(
              `ADD of ${environment.interfaceName}`,
              `${store.statePath} keeps what is left: the runtime's DEL of this container and interface removes it once the cause is fixed (or \`vcnet gc --netns ${shellWord(namespace.path)}\`)`,
            );
          },
        );
        const plumbing = endpoint?.plumbing;
        if (!plumbing?.tapName) {
          // Physical and vhost-user interfaces reach the VM without a tap: nothing to put in a CNI result.
          await detachRecorded(network, `ADD of ${environment.interfaceName}`, keeper, { finishedBy: DEL_AGAIN });
          throw new CniError(
            CniErrorCode.UNSUPPORTED_INTERFACE,
            'VCNET_CNI_NO_TAP',
            `${environment.interfaceName} is a ${endpoint?.type ?? 'unknown'} interface, which a VM uses without a tap`,
            { value: environment.interfaceName, hint: 'give such an interface to the VM with `vcnet attach` instead' },
          );
        }
        const deviceLink = await network.link(plumbing.tapIndex);
        device = {
          name: plumbing.tapName,
          mac: deviceLink.address ?? '',
          kind: deviceLink.kind === 'macvtap' ? 'macvtap' : 'tap',
        };
        keeper.persist();
        // The macvtap model moves the pod interface to another MAC: the result says so.
        const podLink = await network.link(info.link.index);
        return resultWith(
          previous,
          config.cniVersion,
          namespace.path,
          environment.interfaceName,
          device,
          podLink.address,
        );
      } finally {
        network.close();
      }
    }, config.lockTimeoutMs)
    .finally(() => namespace.opened.close());
}

/**
 * Another chain on the same pod (its own ADD, its own record) already gave the VM a NIC with this
 * interface's MAC: Kata's agent finds a guest NIC by its MAC, so both interfaces' addresses and
 * routes would land on one NIC. Refused before anything is made, as `vcnet attach` refuses two pod
 * links with one MAC.
 */
function refuseSiblingGuestMac(link: Link, siblings: readonly CniAttachmentState[]): void {
  const mac = link.address?.toLowerCase();
  if (!mac) return;
  for (const sibling of siblings) {
    for (const endpoint of sibling.network.endpoints) {
      const guestMac = (endpoint.plumbing?.guestHardwareAddress || endpoint.properties.link.address)?.toLowerCase();
      if (guestMac !== mac) continue;
      throw new ConfigurationConflictError(
        `${link.name} has the MAC ${mac} of ${sibling.interfaceName}, which vcnet-cni already gave the VM (network ${sibling.networkName}): each would be a guest NIC with that MAC, and Kata's agent finds a NIC by its MAC, so both interfaces' addresses and routes would go to one NIC`,
        mac,
        `give ${link.name} a MAC of its own (the \`mac\` of its network's plugin or runtime config), or attach only one of the two; nothing was changed`,
      );
    }
  }
}

/** The previous result with the VM's device listed (in the pod namespace) and the pod interface's MAC as it is now. */
export function resultWith(
  previous: PreviousResult,
  cniVersion: string,
  namespacePath: string,
  interfaceName: string,
  device: AttachedDevice,
  podMac: string | undefined,
): CniResult {
  const interfaces: CniInterface[] = (previous.interfaces ?? []).map((entry) =>
    podMac && entry.name === interfaceName && entry.sandbox === namespacePath && entry.mac !== podMac
      ? { ...entry, mac: podMac }
      : entry,
  );
  if (!interfaces.some((entry) => entry.name === device.name && entry.sandbox === namespacePath)) {
    interfaces.push({ name: device.name, mac: device.mac, sandbox: namespacePath });
  }
  return { ...previous, cniVersion, interfaces };
}

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
      return;
    }
    const { network } = recorded;
    try {
      // As `vcnet detach`: no ADD or attach adds a link to vcnet's group while this DEL undoes.
      await lockRecordedNamespace(recorded, state, config.lockTimeoutMs, { howToWaitLonger: CNI_LOCK_TIMEOUT_HINT });
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
 * none on DEL when the namespace is gone), or an absolute path that does not exist. undefined when
 * it names something that exists, or that cannot be looked at (EACCES: it may exist): the runtime
 * then still has the namespace, and what vcnet-cni made may live in it. A relative path never says
 * gone: it resolves from vcnet-cni's cwd, which is not the runtime's (`ns/net` from the wrong
 * directory names nothing while the namespace it meant lives on).
 */
function namespaceGoneByRuntime(path: string | undefined): string | undefined {
  if (!path) return 'CNI_NETNS is empty';
  if (!isAbsolute(path)) return undefined;
  try {
    lstatSync(path);
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
  let opened: OpenedNamespace;
  try {
    opened = openNetworkNamespace(path, 'CNI_NETNS');
  } catch (error) {
    return `CNI_NETNS is not a namespace now (${(error as Error).message}), nothing else to remove`;
  }
  try {
    if (isHostNamespace(opened.entryPath))
      return `CNI_NETNS ${path} is the plugin's own namespace: nothing removed there`;
    // A record that still tells its namespace, and names another one: its plumbing is not in this one.
    const recorded = recordText === undefined ? undefined : salvageNamespace(recordText);
    if (recorded && (recorded.dev !== opened.identity.dev || recorded.ino !== opened.identity.ino))
      return `the record named another namespace than CNI_NETNS ${path}: nothing removed there`;
    try {
      // Through the fd opened here: gc looks at exactly the namespace checked above.
      const report = await collectGarbage({ namespaces: [opened.entryPath], stateDirectories: [stateDirectory] });
      const removed = report.removed.filter((item) => item.kind !== 'state').map(describeRemoved);
      const failures = report.failures.map((failure) => failure.reason);
      return [
        removed.length > 0
          ? `removed ${removed.join(', ')} (no record owns ${removed.length === 1 ? 'it' : 'them'}) in ${path}`
          : `nothing unowned in ${path}`,
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

/** Verifies that what ADD made is still there, as recorded; throws CHECK_FAILED listing every difference. */
export async function check(request: CniRequest): Promise<void> {
  const { environment, config } = request;
  const previous = requirePreviousResult(config, 'CHECK');
  const namespace = usableNamespace(environment.namespacePath);
  const store = storeOf(request);
  const fail = (problems: string[], drifted = false) =>
    new CniError(
      CniErrorCode.CHECK_FAILED,
      'VCNET_CNI_CHECK_FAILED',
      `${environment.interfaceName} of container ${environment.containerId} is not as ADD left it: ${problems.join('; ')}`,
      {
        value: problems,
        hint: drifted
          ? `the VM's NIC was built from ${environment.interfaceName} as ADD recorded it: put vcnet-cni last in the chain, after every plugin that changes the interface (tuning...), and change the pod's MAC or MTU only through them; the runtime recreates the pod network (DEL, then ADD) to repair it`
          : 'the runtime recreates the pod network (DEL, then ADD) to repair it',
      },
    );
  const nothingRecorded = () => fail([`no completed ADD is recorded in ${store.statePath}`]);
  // As DEL: with nothing recorded, CHECK answers without making the state or lock directories.
  if (!store.hasRecord() && !store.hasLockFile()) {
    namespace.opened.close();
    throw nothingRecorded();
  }
  await store
    .withLock(async () => {
      const state = store.read();
      if (!state?.device) throw nothingRecorded();
      if (!sameNamespace(state.namespace, namespace.opened.identity)) {
        const found = namespace.opened.identity;
        const damaged = damagedIdentityField(state.namespace, found, state.createdAt);
        if (damaged) throw new RecordedIdentityDamagedError(store.statePath, damaged, state.namespace, found);
        throw fail([`ADD attached ${state.namespace.path}, not this namespace`]);
      }
      const device = state.device;
      const problems: string[] = [];
      if (!previous.interfaces?.some((entry) => entry.name === device.name && entry.sandbox === namespace.path)) {
        problems.push(`prevResult does not list ${device.name} in ${namespace.path}`);
      }
      const handle = NetlinkHandle.open(namespace.opened.entryPath);
      let drift: string[];
      try {
        problems.push(...(await plumbingProblems(handle, state)));
        drift = podLinkDrift(await handle.links(), state);
      } finally {
        handle.close();
      }
      if (problems.length + drift.length > 0) throw fail([...problems, ...drift], drift.length > 0);
    }, config.lockTimeoutMs)
    .finally(() => namespace.opened.close());
}

/**
 * The pod link's MAC and MTU as ADD left them: as it found them, then what its own steps set (the
 * macvtap model gives the pod link a private MAC, its own MAC going to the VM).
 */
function podLinkAsLeft(endpoint: CniAttachmentState['network']['endpoints'][number]) {
  const expected: { address?: string; mtu?: number } = {
    ...(endpoint.properties.link.address ? { address: endpoint.properties.link.address } : {}),
    mtu: endpoint.properties.link.mtu,
  };
  for (const step of endpoint.plumbing?.steps ?? []) {
    if (step.step !== 'change-link' || step.link !== endpoint.name) continue;
    // A record without `set` (older vcnet) does not say what the MAC became: not compared.
    if ('address' in step.before) {
      if (step.set?.address) expected.address = step.set.address;
      else delete expected.address;
    }
    if ('mtu' in step.before) {
      if (step.set?.mtu !== undefined) expected.mtu = step.set.mtu;
      else delete expected.mtu;
    }
  }
  return expected;
}

/**
 * A pod link whose MAC or MTU changed since ADD (a plugin after vcnet-cni in the chain, a person):
 * the VM's NIC still has what was recorded, so its traffic no longer matches the pod's.
 */
function podLinkDrift(links: readonly Link[], state: CniAttachmentState): string[] {
  const resolve = linkResolver(links);
  const problems: string[] = [];
  for (const endpoint of state.network.endpoints) {
    // The same link (by ifindex): a replaced or missing one is reported by plumbingProblems.
    const link = resolve(endpoint.name, endpoint.properties.link.index);
    if (!link || link.name !== endpoint.name) continue;
    const expected = podLinkAsLeft(endpoint);
    if (expected.address && link.address && expected.address.toLowerCase() !== link.address.toLowerCase())
      problems.push(`${endpoint.name} MAC changed since ADD: recorded ${expected.address}, now ${link.address}`);
    if (expected.mtu !== undefined && link.mtu !== expected.mtu)
      problems.push(`${endpoint.name} MTU changed since ADD: recorded ${expected.mtu}, now ${link.mtu}`);
  }
  return problems;
}

/** Differences between the namespace and the steps ADD recorded (links, qdiscs and filters it created). */
async function plumbingProblems(handle: NetlinkHandle, state: CniAttachmentState): Promise<string[]> {
  // Links by name, and pod links by ifindex (a link made again under the same name is not the one ADD plumbed).
  const resolve = linkResolver(await handle.links());
  const problems: string[] = [];
  if (!resolve(state.interfaceName)) problems.push(`${state.interfaceName} is missing`);
  const steps: PlumbingStep[] = [];
  for (const endpoint of state.network.endpoints) {
    if (isUnfinished(endpoint.plumbing)) problems.push(`the attach of ${endpoint.name} never completed`);
    steps.push(...(endpoint.plumbing?.steps ?? []));
  }
  const missingLinks = new Set<string>();
  for (const step of steps) {
    if (step.step !== 'create-link') continue;
    const link = resolve(step.name);
    if (!link) {
      missingLinks.add(step.name);
      problems.push(`${step.kind} ${step.name} is missing`);
    } else if ((link.flags & InterfaceFlag.UP) === 0) {
      problems.push(`${step.name} is down`);
    }
  }
  for (const step of steps) {
    if (step.step !== 'add-qdisc' && step.step !== 'add-filter') continue;
    const link = resolve(step.link, step.index);
    if (!link) {
      const namesake = resolve(step.link);
      if (namesake)
        problems.push(`${step.link} was replaced since ADD (ifindex ${step.index} then, ${namesake.index} now)`);
      else if (!missingLinks.has(step.link) && step.link !== state.interfaceName)
        problems.push(`${step.link} is missing`);
      continue;
    }
    if (step.step === 'add-qdisc') {
      const present = (await handle.qdiscs(link.index)).some(
        (qdisc) => qdisc.handle === step.handle && qdisc.parent === step.parent && qdisc.kind === step.kind,
      );
      if (!present) problems.push(`${step.kind} qdisc ${formatHandle(step.handle)} on ${step.link} is missing`);
    } else {
      // A dump under a qdisc that is gone fails: then the filter is gone too.
      const filters = await handle.filters(link.index, step.parent).catch(() => []);
      const present = filters.some((filter) => filter.priority === step.priority && filter.kind === step.kind);
      if (!present) problems.push(`${step.kind} filter (priority ${step.priority}) on ${step.link} is missing`);
    }
  }
  return problems;
}
