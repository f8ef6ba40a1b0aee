/**
 * ADD of vcnet-cni: give CNI_IFNAME (made by the plugin before, e.g. bridge) to a VM with the
 * configured internetworking model, recorded as it is made, and print the previous result with the
 * VM's device added.
 */
import { RollbackIncompleteError } from '../errors.js';
import type { Link } from '../netlink/codec/link.js';
import type { NamespaceSnapshot } from '../netlink/handle.js';
import { NamespaceHolders } from '../netns/namespace-holders.js';
import { type OpenedNamespace, sameNamespace } from '../netns/namespace-identity.js';
import { placeOfRecordedNamespace } from '../netns/namespace-liveness.js';
import { ConfigurationConflictError, type NetworkConfig } from '../network/config.js';
import { loopbackRefused } from '../network/endpoint/create-endpoint.js';
import { freeDeviceIndex } from '../network/interface-pair.js';
import type { NetworkInfo } from '../network/network-info.js';
import { interfacesOf, loopbackNames } from '../network/scan.js';
import { bootIdField, earlierBootOf, earlierBootReason } from '../network/state/boot-id.js';
import { removeMadeDirectories } from '../network/state/directory.js';
import { refuseUnusableRecordEnvironment } from '../network/state/store.js';
import { refuseMacvtapInUserNamespace } from '../network/user-namespace.js';
import { attachUnderLocks } from '../sandbox/attach-under-locks.js';
import { noticeNoNetwork } from '../sandbox/no-network.js';
import { detachRecorded, undoCompletedAttach } from '../sandbox/recorded.js';
import { shellWord } from '../shell-word.js';
import {
  type CniConfig,
  type CniEnvironment,
  type CniInterface,
  type PreviousResult,
  requirePreviousResult,
} from './config.js';
import { CniError } from './errors.js';
import { commandSubject, type Warn, warningLine, warnOnStandardError } from './notices.js';
import { type CniRequest, DEL_AGAIN, sandboxKey, storeOf, usableNamespace } from './request.js';
import {
  type AttachedDevice,
  type AttachmentStore,
  CNI_LOCK_TIMEOUT_HINT,
  CNI_STATE_VERSION,
  type CniAttachmentState,
  prepareStateDirectory,
} from './state.js';

/** The CNI result printed by ADD: the previous result plus the VM's device. */
export type CniResult = PreviousResult & { cniVersion: string; interfaces: CniInterface[] };

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
  let device: AttachedDevice | undefined;
  // There is no sandbox for `vcnet detach` to find here: the CNI record is finished by DEL.
  const attachFailure = (error: unknown) => {
    if (!(error instanceof RollbackIncompleteError)) return error;
    return error.retold(
      `ADD of ${environment.interfaceName}`,
      `${store.statePath} keeps what is left: the runtime's DEL of this container and interface removes it once the cause is fixed (or \`vcnet gc --netns ${shellWord(namespace.path)}\`)`,
    );
  };
  return attachUnderLocks({
    store: {
      withLock: (work) => store.withLock(work, config.lockTimeoutMs),
      prepareToRecord: () => store.prepareToRecord(),
    },
    refuseExisting: () => refuseExistingRecord(store, environment, namespace.opened, warn),
    openNamespace: () => namespace.opened,
    namespacePath: namespace.path,
    networkConfig: networkConfigOf(config, namespace.opened.identity.path),
    networkKey: sandboxKey(environment),
    podNamespace: {
      lockTimeoutMs: config.lockTimeoutMs,
      howToWaitLonger: CNI_LOCK_TIMEOUT_HINT,
      stateDirectories: [config.stateDirectory],
      // This container's other chains (their records) may have vcnet's links here.
      ownRecords: () => store.containerRecordFiles(),
    },
    attachOptions: (snapshot) => {
      const info = podInterfaceOf(snapshot, environment.interfaceName, namespace.path);
      const siblings = store.siblings();
      refuseSiblingGuestMac(info.link, siblings);
      const taken = new Set(siblings.flatMap((sibling) => sibling.network.endpoints.map((e) => e.index)));
      const firstIndex = freeDeviceIndex(new Set(snapshot.links.map((link) => link.name)), { taken });
      return { interfaces: [info], firstIndex };
    },
    keeper: (network) => {
      const createdAt = new Date().toISOString();
      const bootId = bootIdField();
      const record = (): CniAttachmentState => ({
        version: CNI_STATE_VERSION,
        id: environment.containerId,
        namespace: namespace.opened.identity,
        createdAt,
        ...bootId,
        interfaceName: environment.interfaceName,
        networkName: config.name,
        ...(device ? { device } : {}),
        network: network.save(),
      });
      return { persist: () => store.write(record()), discard: () => store.remove(), path: store.statePath };
    },
    attachFailure,
    finish: async (attached, network, keeper) => {
      const [endpoint] = attached;
      if (!endpoint?.plumbing?.tapName) {
        // Physical and vhost-user interfaces reach the VM without a tap: nothing to put in a CNI result.
        await detachRecorded(network, `ADD of ${environment.interfaceName}`, keeper, { finishedBy: DEL_AGAIN });
        throw new CniError(
          'VCNET_CNI_NO_TAP',
          `${environment.interfaceName} is a ${endpoint?.type ?? 'unknown'} interface, which a VM uses without a tap`,
          { value: environment.interfaceName, hint: 'give such an interface to the VM with `vcnet attach` instead' },
        );
      }
      const { plumbing } = endpoint;
      let podMac: string | undefined;
      try {
        const deviceLink = await network.link(plumbing.tapIndex);
        device = {
          name: plumbing.tapName,
          mac: deviceLink.address ?? '',
          kind: deviceLink.kind === 'macvtap' ? 'macvtap' : 'tap',
        };
        keeper.persist();
        // The macvtap model moves the pod interface to another MAC: the result says so.
        podMac = (await network.link(endpoint.properties.link.index)).address;
      } catch (error) {
        // The record of the device (or the links read for the result) failed, as at the open-file
        // limit: the runtime is told ADD failed, so nothing of it stays made, nor recorded.
        device = undefined;
        throw attachFailure(await undoCompletedAttach(network, attached, keeper, error as Error));
      }
      // CNI_IFNAME is attached because the runtime names it, address or not (as `attach --interface`
      // does): a chain that gave it none leaves the VM a NIC with no address, said as attach says it.
      noticeNoNetwork('attach', network.endpoints(), namespace.path, {
        noAddress: noAddressAdvice(previous, environment.interfaceName),
      });
      return resultWith(previous, config.cniVersion, namespace.path, environment.interfaceName, device, podMac);
    },
  }).finally(() => namespace.opened.close());
}

/** CNI_IFNAME in the ADD's scan: the interface the plugin before vcnet-cni made. */
function podInterfaceOf(snapshot: NamespaceSnapshot, interfaceName: string, namespacePath: string): NetworkInfo {
  const info = interfacesOf(snapshot).find((candidate) => candidate.link.name === interfaceName);
  if (info) return info;
  if (loopbackNames(snapshot).includes(interfaceName)) throw loopbackRefused(interfaceName);
  throw new CniError('VCNET_CNI_INTERFACE_NOT_FOUND', `no interface ${interfaceName} in ${namespacePath}`, {
    value: interfaceName,
    hint: 'vcnet-cni attaches the interface the plugin before it made: list it after bridge, ptp or macvlan',
  });
}

/**
 * A record of this container and interface, read under its lock, refuses the ADD; one from before a
 * reboot (its namespace exists nowhere) is dropped with a warning instead, and the ADD goes on.
 */
function refuseExistingRecord(
  store: AttachmentStore,
  environment: CniEnvironment,
  namespace: OpenedNamespace,
  warn: Warn,
): void {
  const existing = store.read();
  if (!existing) return;
  const earlier = earlierBootOf(existing);
  if (earlier) {
    // Its namespace, and all ADD made in it, went with that boot (the inode and cookie it names may
    // be this very pod's now): dropped, nothing looked at, and this ADD goes on.
    store.remove();
    warn(
      warningLine(
        commandSubject('ADD', sandboxKey(environment)),
        `removed the stale record ${store.statePath}: ${earlierBootReason(earlier)}`,
      ),
    );
    return;
  }
  // Told as detach, list and gc tell it (placeOfRecordedNamespace): nothing holds the recorded
  // namespace, or a later namespace has its inode (the pod's next one, CNI_NETNS itself maybe).
  const place = sameNamespace(existing.namespace, namespace.identity)
    ? undefined
    : placeOfRecordedNamespace(existing.namespace, new NamespaceHolders());
  if (place?.at === 'nowhere') {
    // A record from before a reboot (a stateDir that outlived /run), or of a pod namespace deleted
    // without a DEL: its namespace, and all ADD made in it, are gone. Dropped as gc would drop it,
    // and this ADD goes on.
    store.remove();
    const { path, ino, cookie } = existing.namespace;
    warn(
      warningLine(
        commandSubject('ADD', sandboxKey(environment)),
        `removed the stale record ${store.statePath}: its namespace ${path} (inode ${ino}) exists nowhere${place.laterCookie === undefined ? '' : `: a later namespace (cookie ${place.laterCookie}) has its inode now, not the recorded one (cookie ${cookie})`}`,
      ),
    );
    return;
  }
  if (!existing.device) {
    // The record an ADD keeps while it works: that ADD was killed (or its undo refused) half-way.
    throw new CniError(
      'VCNET_CNI_ALREADY_ADDED',
      `an earlier ADD of ${environment.interfaceName} of container ${environment.containerId} did not complete (its record ${store.statePath} has no device): what it made is still there`,
      {
        value: environment.interfaceName,
        hint: 'DEL this container and interface (it removes what the earlier ADD made), then ADD again',
      },
    );
  }
  throw new CniError(
    'VCNET_CNI_ALREADY_ADDED',
    `${environment.interfaceName} of container ${environment.containerId} is already attached (state in ${store.statePath})`,
    { value: environment.interfaceName, hint: 'the runtime must DEL before it ADDs the same interface again' },
  );
}

/**
 * Where CNI_IFNAME's address should have come from, for the notice of an ADD that attaches it with
 * none: prevResult's IPs for it (the interface plugin's IPAM), or why there are none.
 */
function noAddressAdvice(previous: PreviousResult, interfaceName: string): string {
  const interfaces = previous.interfaces ?? [];
  const listed = (previous.ips ?? [])
    .filter((ip) => {
      const position = (ip as { interface?: unknown }).interface;
      return typeof position === 'number' && interfaces[position]?.name === interfaceName;
    })
    .map((ip) => ip.address);
  if (listed.length > 0)
    return `prevResult gives ${interfaceName} ${listed.join(', ')}, which it does not have: a plugin between its interface plugin and vcnet-cni removed it, or the interface plugin did not set it (the guest gets what the pod link has when vcnet-cni runs)`;
  return `prevResult lists no IP for ${interfaceName}: its interface plugin ran without IPAM (layer 2 only) or its IPAM gave none; give that plugin an "ipam" section (host-local, static, dhcp) for the guest to get an address`;
}

/** The network an ADD attaches in: CNI_IFNAME's namespace (recorded path), with the config's model and tap options. */
function networkConfigOf(config: CniConfig, namespacePath: string): NetworkConfig {
  return {
    namespacePath,
    model: config.model,
    namespaceCreatedByVcnet: false,
    disableNewNetns: false,
    queues: config.queues,
    vhostNet: 'auto',
    ...(config.tapOwner !== undefined ? { tapOwner: config.tapOwner } : {}),
    ...(config.tapGroup !== undefined ? { tapGroup: config.tapGroup } : {}),
    ...(config.rateLimit ? { rateLimit: config.rateLimit } : {}),
  };
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
