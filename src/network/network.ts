/**
 * Network: the endpoints of one sandbox and their plumbing in its pod namespace.
 *
 *   const network = Network.open(config);
 *   await network.addEndpoints();            // scan, create, attach every interface
 *   generateGuestNetwork(network.endpoints()) // what the agent should set
 *   await network.removeEndpoints();         // exact detach
 */
import { booleanOption, functionOption, numberOption, optionsArgument } from '../arguments.js';
import { channels, publish, traced, tracing } from '../diagnostics.js';
import { hintFromCause, InvalidInputError, RollbackIncompleteError, SystemCallError } from '../errors.js';
import { yieldToEventLoop } from '../event-loop.js';
import type { HotplugTarget } from '../hypervisor/device.js';
import type { Link } from '../netlink/codec/link.js';
import type { NamespaceSnapshot, NetlinkHandle, SnapshotPart } from '../netlink/handle.js';
import { NetlinkHandle as Handle } from '../netlink/handle.js';
import { pastedCommandIn } from '../netns/held-device-fds.js';
import { HostNamespaceError, isHostNamespace, OWN_NAMESPACE_PATH } from '../netns/host-namespace.js';
import type { OpenedNamespace } from '../netns/namespace-identity.js';
import { shellWord } from '../shell-word.js';
import {
  ConfigurationConflictError,
  type NetworkConfig,
  refuseDisabledColdPlug,
  refuseHostNamespaceUnlessShared,
  validateNetworkConfig,
} from './config.js';
import { BridgedMacvlanEndpoint } from './endpoint/bridged-macvlan-endpoint.js';
import { type CreateEndpointOptions, createEndpoint } from './endpoint/create-endpoint.js';
import { type Endpoint, type EndpointState, EndpointStateError } from './endpoint/endpoint.js';
import { closeRecordQueueFds, networkRecord } from './endpoint/held-queue-fds.js';
import { IpvlanEndpoint } from './endpoint/ipvlan-endpoint.js';
import { MacvtapEndpoint } from './endpoint/macvtap-endpoint.js';
import { type PciDeviceInfo, PhysicalEndpoint, refusePhysicalEndpoints } from './endpoint/physical-endpoint.js';
import { TapEndpoint } from './endpoint/tap-endpoint.js';
import { TuntapEndpoint } from './endpoint/tuntap-endpoint.js';
import { VethEndpoint } from './endpoint/veth-endpoint.js';
import { VhostUserEndpoint } from './endpoint/vhost-user-endpoint.js';
import { routesNotForGuest, routesNotForGuestNotice } from './guest.js';
import { freeDeviceIndex } from './interface-pair.js';
import { checkNotVcnetDevice, isVcnetDevice } from './link-name.js';
import {
  AttachError,
  completedAttachHandedOver,
  isUnfinished,
  type PlumbingContext,
} from './model/plumbing-context.js';
import type { EndpointType, NetworkInfo } from './network-info.js';
import { VCNET_LINK_GROUP } from './plan/plan-attach.js';
import type { DetachPlan } from './plan/plan-detach.js';
import type { TrafficControlRepair } from './plan/plan-tc-repair.js';
import type { Plan, PlumbingStep } from './plan/types.js';
import type { AttachOperation, UndoOf, UndoReport } from './plan/undo.js';
import {
  ATTACH_OPERATIONS,
  describeHandedOver,
  describeRecords,
  planUndo,
  recordOfLeftNotUpdated,
  undoRecords,
} from './plan/undo.js';
import {
  interfacesOf,
  physicalLinksOf,
  refuseUnknownNamedInterfaces,
  type SkippedInterface,
  selectEndpointInterfaces,
  skippedNotice,
} from './scan.js';
import { NETWORK_STATE_VERSION } from './state/content-versions.js';
import { tapOwnershipFields } from './tap-owner.js';
import { repairTrafficControl } from './tc-repair.js';
import { refuseMacvtapInUserNamespace, refuseMacvtapLinkInUserNamespace } from './user-namespace.js';

/** A pod link the scan left out, and the line that says why. */
export interface SkippedNotice {
  endpoint: string;
  reason: string;
  message: string;
}

/** What a `Network` saves to be reopened later: its config and its endpoints' states. */
export interface NetworkState {
  version: typeof NETWORK_STATE_VERSION;
  config: NetworkConfig;
  endpoints: EndpointState[];
}

/**
 * Options of `Network.addEndpoints`: which interfaces to add (else a scan), a scan already made, and the VM
 * to hot-plug into.
 */
export interface AddEndpointsOptions {
  /** Interfaces to add; the namespace is scanned when omitted or empty. */
  interfaces?: NetworkInfo[];
  /** The scan the caller already made (Network.scan()): the namespace is then not scanned again. */
  snapshot?: NamespaceSnapshot;
  /** Plug the NICs into this running VM as they are attached. */
  hotplug?: HotplugTarget;
  keepFds?: boolean;
  /** Guest names by pod interface name (add-iface's `name`). */
  guestNames?: Record<string, string>;
  requestedType?: EndpointType;
  /** Lowest index (tap<index>_kata) for the new endpoints: callers that keep several networks in one namespace (a CNI chain per interface) keep their names apart. */
  firstIndex?: number;
  /** Called whenever the network's state changed or is about to (persist it to survive a crash). */
  journal?: (network: Network) => void;
  /**
   * The VMM the endpoints are for: one that cannot take physical NICs (Cloud Hypervisor through
   * vcnet, Firecracker) is refused, from this attach's own scan, before anything is made.
   */
  hypervisor?: 'qemu' | 'clh' | 'firecracker';
  /**
   * The command this attach is part of, which the notices of its rollback name as their `operation`
   * (vcnet:notice): 'attach' (the default), 'add-iface' or 'watch' (undo.ts's AttachOperation).
   */
  operation?: AttachOperation;
}

const ADD_ENDPOINTS_KEYS: readonly (keyof AddEndpointsOptions)[] = [
  'interfaces',
  'snapshot',
  'hotplug',
  'keepFds',
  'guestNames',
  'requestedType',
  'firstIndex',
  'journal',
  'hypervisor',
  'operation',
];

/** Why the scan leaves a tap<N>_kata, ifb<N>_kata or link in vcnet's group alone. */
const VM_DEVICE_REASON = "a VM's device (tap<N>_kata, ifb<N>_kata or in vcnet's link group), not a pod interface";

/**
 * One notice per attach for the pod routes through the added links that the guest will not get:
 * looked for only when someone listens on vcnet:notice.
 */
export function noticeRoutesNotForGuest(
  snapshot: Pick<NamespaceSnapshot, 'routes'>,
  added: readonly Endpoint[],
  hotplug: boolean,
): void {
  if (added.length === 0) return;
  publish(channels.notice, () => {
    const indexes = new Set(added.map((endpoint) => endpoint.properties.link.index));
    const message = routesNotForGuestNotice(routesNotForGuest(snapshot.routes, indexes));
    if (!message) return undefined;
    return {
      operation: hotplug ? 'hot-attach' : 'attach',
      endpoint: added.map((endpoint) => endpoint.properties.link.name).join(','),
      message,
    };
  });
}

/**
 * The network of one sandbox in its namespace: the scan that turns pod links into endpoints, their
 * attach (planned, journaled, rolled back on failure) and detach, and the record (`save()`,
 * `Network.load()`) that lets another process undo it. `Network.open(config, sandboxId)` starts one;
 * attachSandbox and detachSandbox are the recorded way to use it.
 */
export class Network {
  private readonly list: Endpoint[] = [];
  /** Links the last scan left out (no address, not named); the library does not log, the caller prints. */
  private skippedLinks: SkippedInterface[] = [];

  private constructor(
    readonly config: NetworkConfig,
    private readonly handle: NetlinkHandle,
    readonly sandboxId: string,
    /** The path the kernel is asked to enter: config.namespacePath, or an fd of it checked by identity (/proc/self/fd/N). */
    private readonly entryPath: string,
  ) {}

  /**
   * `entry`: the path the kernel is asked to enter (default config.namespacePath), or the namespace
   * opened and checked by identity, whose socket (the one its cookie was read on) the network then
   * works through.
   */
  static open(
    given: NetworkConfig,
    sandboxId = 'sandbox',
    entry: string | OpenedNamespace = given.namespacePath,
  ): Network {
    const config = validateNetworkConfig(given);
    refuseHostNamespaceUnlessShared(config); // never the host namespace (nodes, issue 12)
    refuseMacvtapInUserNamespace(config.model, 'model');
    return new Network(config, openHandleRefusingHost(config, entry), sandboxId, entryPathOf(entry));
  }

  /** One notice per link the last scan skipped, e.g. for the CLI to log as a warning. */
  skippedNotices(): SkippedNotice[] {
    return this.skippedLinks.map((entry) => ({
      endpoint: entry.info.link.name,
      reason: entry.reason,
      // Naming a VM's device with --interface is refused: the usual hint would send the user there.
      message:
        entry.reason === VM_DEVICE_REASON
          ? `skipped ${entry.info.link.name} (kind ${entry.info.link.kind ?? 'none'}): ${entry.reason}`
          : skippedNotice(
              entry,
              this.config.vhostUserStorePath ? { vhostUserStorePath: this.config.vhostUserStorePath } : {},
            ),
    }));
  }

  endpoints(): readonly Endpoint[] {
    return this.list;
  }

  private nextIndex(): number {
    return this.list.reduce((highest, endpoint) => Math.max(highest, endpoint.index + 1), 0);
  }

  /**
   * With disable_new_netns the taps are made in the host's namespace, which every such sandbox
   * shares: an index whose tap<N>_kata or ifb<N>_kata another sandbox (or anyone) has is skipped. In
   * a pod's own namespace such a link is not expected, and the plan refuses it by name instead.
   */
  private freeIndex(candidate: number, snapshot: NamespaceSnapshot): number {
    if (!this.config.disableNewNetns) return candidate;
    return freeDeviceIndex(new Set(snapshot.links.map((link) => link.name)), { from: candidate });
  }

  /**
   * Creates and attaches endpoints. All or nothing: if one fails, the ones this call attached are
   * detached again before the error is thrown.
   */
  async addEndpoints(options: AddEndpointsOptions = {}): Promise<Endpoint[]> {
    options = optionsArgument(options, 'options', ADD_ENDPOINTS_KEYS);
    functionOption(options.journal, 'journal');
    booleanOption(options.keepFds, 'keepFds');
    if (options.operation !== undefined && !ATTACH_OPERATIONS.includes(options.operation))
      throw new InvalidInputError('operation', options.operation, ATTACH_OPERATIONS.join(', '));
    // An index past what a tap<index>_kata name can hold (IFNAMSIZ) is refused by the kernel mid-attach.
    numberOption(options.firstIndex, 'firstIndex', { min: 0, max: 9_999_999 });
    return traced(
      tracing.attach,
      () => ({
        sandbox: this.sandboxId,
        namespacePath: this.config.namespacePath,
        model: this.config.model,
        hotplug: options.hotplug !== undefined,
      }),
      () => this.addEndpointsTraced(options),
    );
  }

  private async addEndpointsTraced(options: AddEndpointsOptions): Promise<Endpoint[]> {
    const snapshot = options.snapshot ?? (await this.scan());
    const interfaces = this.interfacesToAdd(snapshot, options);
    const context = this.plumbingContext(snapshot, options);
    const added: Endpoint[] = [];
    // Planned, not yet attached: listed (with its intent as its pending record) from the one write
    // of every endpoint's intent until its attach starts, dropped when an attach before it fails.
    const waiting: Endpoint[] = [];
    // The endpoint being attached when the attach failed, if it had begun.
    let failing: string | undefined;
    try {
      let index = Math.max(this.nextIndex(), options.firstIndex ?? 0);
      for (const info of interfaces) {
        index = this.freeIndex(index, snapshot);
        const endpoint = this.newEndpoint(info, index++, options);
        // With disable_new_netns the namespace is the host's: only new taps of vcnet's own.
        if (this.config.disableNewNetns && endpoint.type !== 'tap') {
          throw new ConfigurationConflictError(
            `with disable_new_netns only hot-added taps can be attached, not ${info.link.name} (${endpoint.type})`,
            info.link.name,
            'add the interface with type "tap" (add-iface), or give the sandbox its own namespace',
          );
        }
        waiting.push(endpoint);
      }
      // Every endpoint's plan first, and their intents (what each may leave, its links' indexes
      // chosen) in one record write before the first change: the executor then writes none per
      // endpoint. A write per endpoint and step made an attach quadratic in its endpoints (each write
      // is the whole record: 500 endpoints took 17 s, 1,000 longer than the lock timeout).
      for (const endpoint of waiting) await endpoint.prepareAttach(context);
      // Listed before they are attached, so every journal written during the attach includes them.
      this.list.push(...waiting);
      if (waiting.length > 0) options.journal?.(this);
      while (waiting.length > 0) {
        const endpoint = waiting.shift() as Endpoint;
        const info = endpoint.properties;
        failing = info.link.name;
        // Between endpoints the embedder's event loop runs (one endpoint's kernel work is the stall
        // bound); a single-endpoint attach never waits here.
        if (added.length > 0) await yieldToEventLoop();
        try {
          await traced(
            options.hotplug ? tracing.hotplug : tracing.attachEndpoint,
            () => ({
              sandbox: this.sandboxId,
              namespacePath: this.config.namespacePath,
              endpoint: info.link.name,
              endpointType: endpoint.type,
            }),
            async () => {
              if (options.hotplug) await endpoint.hotAttach(context, options.hotplug);
              else await endpoint.attach(context);
              return endpoint.plumbing?.tapName; // the channel's documented result
            },
          );
        } catch (error) {
          // An endpoint whose undo was refused stays listed with what is left, so the record names
          // it for detach and gc (the error is published on the endpoint's tracing channel).
          if (!(error instanceof RollbackIncompleteError)) this.list.splice(this.list.indexOf(endpoint), 1);
          throw error;
        }
        added.push(endpoint);
        failing = undefined;
      }
      if (added.length > 0) options.journal?.(this);
    } catch (error) {
      // The endpoints after the failing one were never started: nothing of theirs was made.
      for (const endpoint of waiting) {
        endpoint.dropPrepared();
        const listed = this.list.indexOf(endpoint);
        if (listed >= 0) this.list.splice(listed, 1);
      }
      // The endpoints this call attached before the failing one go too; if the kernel refuses any of
      // that, the error says what is left (and the record keeps it), never "everything was removed".
      const { failures, left, notChecked, handedOver } = await this.undoAttached(
        added,
        options.hotplug,
        options.operation,
      );
      try {
        options.journal?.(this);
      } catch (journalError) {
        if (left.length > 0) failures.push(recordOfLeftNotUpdated(journalError));
      }
      // The cause speaks of the failing endpoint only: say which earlier endpoints the undo was of.
      // No endpoint failed when the failure came after the last was attached (the record written
      // then): the undo was of every endpoint this call attached.
      const earlier = added.map((endpoint) => endpoint.properties.link.name).join(', ');
      const attachedBefore = `the endpoint${added.length > 1 ? 's' : ''} ${failing === undefined ? 'it attached' : 'attached before it'} (${earlier})`;
      // What the failing endpoint's own rollback handed over is said with what the earlier ones' did.
      const handedOverBefore =
        error instanceof RollbackIncompleteError || error instanceof AttachError ? error.handedOver : [];
      if (left.length > 0 || (error instanceof RollbackIncompleteError && handedOver.length > 0)) {
        const cause = error instanceof RollbackIncompleteError ? (error.cause as Error) : (error as Error);
        const leftBefore = error instanceof RollbackIncompleteError ? (error.left as PlumbingStep[]) : [];
        const undone = `${leftBefore.length > 0 ? 'it and ' : ''}${attachedBefore}`;
        throw new RollbackIncompleteError(
          'attach',
          cause,
          [...(error instanceof RollbackIncompleteError ? error.failures : []), ...failures],
          [
            ...(error instanceof RollbackIncompleteError ? (error.value as string[]) : []),
            ...describeRecords(left.filter((record) => !notChecked.includes(record))),
          ],
          [...leftBefore, ...left],
          undefined,
          added.length > 0 ? undone : 'it',
          [...(error instanceof RollbackIncompleteError ? error.notChecked : []), ...describeRecords(notChecked)],
          // What to do about the failing endpoint's refusal, as it said it (its own type's remedy).
          error instanceof RollbackIncompleteError ? error.causeHint : hintFromCause(cause),
          [...handedOverBefore, ...handedOver],
        );
      }
      // Everything went but what the earlier endpoints' undo handed over: the error says that stays too.
      if (handedOver.length > 0 && error instanceof AttachError) throw error.withHandedOver(attachedBefore, handedOver);
      // A failure that is no attach's own (the VM refused the NIC's hot-plug, the endpoint's plumbing
      // all undone): said as the failing endpoint's, with what stays; after the last endpoint (the
      // record written then refused), as undoCompletedAttach says it.
      if (handedOver.length > 0 && !(error instanceof RollbackIncompleteError)) {
        if (failing !== undefined)
          throw new AttachError(failing, error as Error, true, undefined, handedOver, attachedBefore);
        throw completedAttachHandedOver(
          added.map((endpoint) => endpoint.properties.link.name),
          error as Error,
          handedOver,
        );
      }
      throw error;
    }
    noticeRoutesNotForGuest(snapshot, added, options.hotplug !== undefined);
    return added;
  }

  /**
   * Gives a tcfilter endpoint's tap, or a macvtap endpoint's macvtap, the MTU its pod link has now
   * (`podLinkMtu`; vcnet watch), as attach gave it the pod link's MTU then: up as well as down (the
   * kernel lowers a macvtap with its lower link but never raises it). Not capped by the guest NIC's
   * host_mtu, which only bounds the guest. The device is vcnet's own and goes on detach, so nothing
   * is recorded. Resolves with the MTU set, or undefined when there was nothing to change.
   */
  async followPodLinkMtu(endpoint: Endpoint, podLinkMtu: number): Promise<number | undefined> {
    const plumbing = endpoint.plumbing;
    const kind = plumbing?.model === 'tcfilter' ? 'tun' : plumbing?.model === 'macvtap' ? 'macvtap' : undefined;
    if (!plumbing || !kind) return undefined;
    const device = await this.handle.findLink({ name: plumbing.tapName });
    // Only vcnet's own device (in its group): a link of that name someone else made is theirs.
    if (device?.kind !== kind || device.group !== VCNET_LINK_GROUP || device.mtu === podLinkMtu) return undefined;
    // A macvtap on another link is not this endpoint's.
    if (kind === 'macvtap' && device.parentIndex !== endpoint.properties.link.index) return undefined;
    await this.handle.setLink(device.index, { mtu: podLinkMtu });
    return podLinkMtu;
  }

  /**
   * Makes again the tc objects (ingress qdiscs, redirect filters, htb rate limits) `endpoint`'s
   * record says vcnet added and that are gone now (vcnet watch), leaving any another tool put in
   * their place; says what it did and found (tc-repair.ts). The record is unchanged: what is made
   * again is what it says.
   */
  repairTrafficControl(endpoint: Endpoint): Promise<TrafficControlRepair[]> {
    return repairTrafficControl(this.handle, endpoint, this.config.rateLimit);
  }

  /**
   * The path the namespace was reached at: the recorded one, or, where that is gone or names another
   * namespace now, the holder's Network.load was given (/proc/PID/ns/net). What a command quoted for
   * pasting on the host names: the recorded path would act in whatever namespace is mounted there.
   */
  get reachedAt(): string {
    return this.handle.namespacePath ?? this.config.namespacePath;
  }

  /** One link of the namespace as it is now (e.g. a tap or the pod link after attach); LinkNotFoundError when gone. */
  link(index: number): Promise<Link> {
    return this.handle.linkByIndex(index);
  }

  /**
   * The namespace as it is now (one dump of each kind); pass it to addEndpoints to scan only once.
   * `parts` narrows it to the dumps the caller reads (the others come back empty).
   */
  scan(parts?: readonly SnapshotPart[]): Promise<NamespaceSnapshot> {
    return traced(
      tracing.scan,
      () => ({ namespacePath: this.config.namespacePath }),
      () => this.handle.snapshot(parts),
    );
  }

  /** The plans addEndpoints would apply, endpoint by endpoint; nothing is changed. */
  async planEndpoints(
    options: Pick<
      AddEndpointsOptions,
      'interfaces' | 'snapshot' | 'firstIndex' | 'guestNames' | 'requestedType' | 'hypervisor'
    > = {},
  ): Promise<Array<{ endpoint: Endpoint; plan: Plan | undefined }>> {
    const snapshot = options.snapshot ?? (await this.scan());
    const context = this.plumbingContext(snapshot, {});
    let index = Math.max(this.nextIndex(), options.firstIndex ?? 0);
    const planned = [];
    for (const info of this.interfacesToAdd(snapshot, options)) {
      index = this.freeIndex(index, snapshot);
      const endpoint = this.newEndpoint(info, index++, options);
      // As attach checks it (Endpoint.attach): a dry run never plans what attach would refuse.
      endpoint.checkAttach(context);
      planned.push({ endpoint, plan: await endpoint.plan(context) });
    }
    return planned;
  }

  /** The interfaces an attach or its plan takes; a VMM that cannot take one of them is refused here. */
  private interfacesToAdd(
    snapshot: NamespaceSnapshot,
    options: Pick<AddEndpointsOptions, 'interfaces' | 'hypervisor'>,
  ): NetworkInfo[] {
    const interfaces = this.selectInterfaces(snapshot, options);
    if (options.hypervisor) refusePhysicalEndpoints(options.hypervisor, physicalLinksOf(interfaces));
    refuseDisabledColdPlug(this.config, physicalLinksOf(interfaces));
    this.refuseSharedGuestMacs(interfaces);
    return interfaces;
  }

  /**
   * Kata's agent finds each guest NIC by its MAC: two NICs with one MAC would have both interfaces'
   * settings land on one NIC, and the failure only show much later (a route "network unreachable"
   * in configure-guest). Refused before anything is made, against the sandbox's attached NICs too.
   */
  private refuseSharedGuestMacs(interfaces: readonly NetworkInfo[]): void {
    const owners = new Map<string, { name: string; attached: boolean }>();
    for (const endpoint of this.list) {
      const mac = endpoint.plumbing?.guestHardwareAddress || endpoint.properties.link.address;
      if (mac) owners.set(mac.toLowerCase(), { name: endpoint.properties.link.name, attached: true });
    }
    for (const info of interfaces) {
      const mac = info.link.address?.toLowerCase();
      if (!mac) continue;
      const other = owners.get(mac);
      // The same link again is not a second NIC (a repeated add-iface is answered elsewhere).
      if (other !== undefined && other.name !== info.link.name) {
        // Reached through another process's socket or tap, no command enters the namespace: said so.
        const ip = pastedCommandIn(this.reachedAt, 'ip');
        throw new ConfigurationConflictError(
          `${info.link.name} and ${other.name}${other.attached ? ' (attached already)' : ''} have the same MAC ${mac}: each would be a guest NIC with that MAC, and Kata's agent finds a NIC by its MAC, so both interfaces' addresses and routes would go to one NIC`,
          mac,
          `give ${info.link.name} a MAC of its own (\`${ip.command} link set ${shellWord(info.link.name)} address MAC\`) before attaching, or leave one of the two out; nothing was changed${ip.unenterable === undefined ? '' : `; ${ip.unenterable}`}`,
        );
      }
      owners.set(mac, { name: info.link.name, attached: false });
    }
  }

  private selectInterfaces(
    snapshot: NamespaceSnapshot,
    options: Pick<AddEndpointsOptions, 'interfaces'>,
  ): NetworkInfo[] {
    if (options.interfaces && options.interfaces.length > 0) return options.interfaces;
    // Kata's disable_new_netns scans nothing; only hot-added taps come later.
    if (this.config.disableNewNetns) return [];
    const named = this.config.namedInterfaces ?? [];
    refuseUnknownNamedInterfaces(snapshot, named);
    // A VM's device (another sandbox's macvtap, say) joined as an endpoint would give two VMs one
    // /dev/tapN: refused by name as add-iface refuses it, and never picked up by the scan.
    for (const link of snapshot.links) if (named.includes(link.name)) checkNotVcnetDevice('namedInterfaces', link);
    const known = new Set(this.list.map((endpoint) => endpoint.properties.link.name));
    const scanned = interfacesOf(snapshot).filter((info) => !known.has(info.link.name) && !this.isOurs(info));
    const vmDevices = scanned.filter((info) => isVcnetDevice(info.link));
    // Links without an address are skipped unless named (scan.ts); the caller reads `skipped`.
    const { selected, skipped } = selectEndpointInterfaces(
      scanned.filter((info) => !vmDevices.includes(info)),
      new Set(named),
    );
    this.skippedLinks = [...vmDevices.map((info) => ({ info, reason: VM_DEVICE_REASON })), ...skipped];
    return selected;
  }

  private plumbingContext(
    snapshot: NamespaceSnapshot,
    options: Pick<AddEndpointsOptions, 'keepFds' | 'journal' | 'operation'>,
  ): PlumbingContext {
    return {
      handle: this.handle,
      namespacePath: this.entryPath,
      queues: this.config.queues,
      keepFds: options.keepFds ?? false,
      vhostNet: this.config.vhostNet,
      qdiscs: snapshot.qdiscs,
      snapshot,
      ...(this.config.rateLimit ? { rateLimit: this.config.rateLimit } : {}),
      ...tapOwnershipFields(this.config),
      ...(options.journal ? { journal: () => options.journal?.(this) } : {}),
      ...(options.operation ? { operation: options.operation } : {}),
    };
  }

  private newEndpoint(
    info: NetworkInfo,
    index: number,
    options: Pick<AddEndpointsOptions, 'guestNames' | 'requestedType'>,
  ): Endpoint {
    const endpoint = createEndpoint(info, {
      index,
      model: this.config.model,
      pairId: `${this.sandboxId}-${info.link.name}`,
      ...(options.guestNames?.[info.link.name] ? { guestName: options.guestNames[info.link.name] } : {}),
      ...(this.config.vhostUserStorePath ? { vhostUserStorePath: this.config.vhostUserStorePath } : {}),
      ...(options.requestedType ? { requestedType: options.requestedType } : {}),
    });
    // A macvtap taken as it is hands the VMM its /dev/tapN, as the macvtap model does (refused at
    // open): refused here, before anything is made for it (attach, add-iface, watch, dry runs).
    if (endpoint.type === 'macvtap') refuseMacvtapLinkInUserNamespace(info.link.name);
    return endpoint;
  }

  /** A link vcnet itself made (a tap, macvtap or ifb of an attached endpoint) is not a pod interface. */
  private isOurs(info: NetworkInfo): boolean {
    return this.list.some((endpoint) =>
      endpoint.records.some((step) => step.step === 'create-link' && step.name === info.link.name),
    );
  }

  /** What removeEndpoints would send for these endpoints (all by default), against the namespace now; nothing is changed. */
  planRemoveEndpoints(endpoints: readonly Endpoint[] = [...this.list]): Promise<DetachPlan> {
    return planUndo(
      this.handle,
      endpoints.flatMap((endpoint) => endpoint.records),
      undefined,
      completedRecords(endpoints),
    );
  }

  /**
   * Detaches endpoints (all by default) and removes them from the network. The undo of every
   * endpoint goes in one batch, so deleting N taps waits for one RCU grace period, not N.
   */
  async removeEndpoints(
    endpoints: readonly Endpoint[] = [...this.list],
    hotplug?: HotplugTarget,
    options: { requireUnplug?: boolean } = {},
  ): Promise<UndoReport> {
    return this.undoEndpoints(endpoints, hotplug, options.requireUnplug ?? false, 'detach');
  }

  /** removeEndpoints, for a detach or for the rollback of a failed attach (whose notices say so). */
  private undoEndpoints(
    endpoints: readonly Endpoint[],
    hotplug: HotplugTarget | undefined,
    requireUnplug: boolean,
    undoOf: UndoOf,
  ): Promise<UndoReport> {
    return traced(
      tracing.detach,
      () => ({
        sandbox: this.sandboxId,
        namespacePath: this.config.namespacePath,
        endpoints: endpoints.map((endpoint) => endpoint.name),
      }),
      () => this.removeEndpointsTraced(endpoints, hotplug, requireUnplug, undoOf),
    );
  }

  /**
   * Undoes endpoints an attach made, for a failed attach: what the kernel refused is left (and stays
   * recorded on its endpoint), and an undo that cannot even start (its dump of the links refused)
   * leaves every record of the endpoints still listed, never "everything was removed".
   */
  async undoAttached(
    endpoints: readonly Endpoint[],
    hotplug?: HotplugTarget,
    /** The command the attach was part of, which the undo's notices name. */
    operation: NonNullable<AddEndpointsOptions['operation']> = 'attach',
  ): Promise<{ failures: string[]; left: PlumbingStep[]; notChecked: PlumbingStep[]; handedOver: string[] }> {
    try {
      const report = await this.undoEndpoints(endpoints, hotplug, false, operation);
      // What is left of them is an attach's that did not complete: recorded so, for gc to finish.
      for (const endpoint of endpoints) if (this.list.includes(endpoint)) endpoint.markUnfinished();
      return {
        failures: report.failures.map((failure) => failure.message),
        left: report.left,
        notChecked: report.notChecked ?? [],
        // Kept for another tool, in no record: the caller's error must say it stays.
        handedOver: (report.keptRecords ?? []).map(describeHandedOver),
      };
    } catch (undoError) {
      // The undo could not start: nothing of it was seen, all of it is kept and not checked.
      const kept = endpoints.filter((endpoint) => this.list.includes(endpoint));
      for (const endpoint of kept) endpoint.markUnfinished();
      const left = kept.flatMap((endpoint) => endpoint.records);
      return { failures: [(undoError as Error).message], left, notChecked: left, handedOver: [] };
    }
  }

  /**
   * Unplugs first, so the VM never sees its backend vanish. With `requireUnplug` (one NIC leaves a
   * VM that goes on: del-iface, watch, an add-iface undone) an endpoint the VM did not release keeps
   * its plumbing and its record, and the report says so; a whole sandbox's detach (the VM is going
   * away) undoes everything anyway.
   */
  private async removeEndpointsTraced(
    endpoints: readonly Endpoint[],
    hotplug: HotplugTarget | undefined,
    requireUnplug: boolean,
    undoOf: UndoOf,
  ): Promise<UndoReport> {
    const stillPlugged: NonNullable<UndoReport['stillPlugged']> = [];
    if (hotplug) {
      for (const endpoint of endpoints) {
        if (!endpoint.pciPath && !endpoint.plumbing) continue;
        try {
          await hotplug.unplugNetworkDevice(endpoint.deviceId);
        } catch (error) {
          if (requireUnplug)
            stillPlugged.push({ endpoint: endpoint.name, deviceId: endpoint.deviceId, error: error as Error });
        }
      }
    }
    const kept = new Set(stillPlugged.map((entry) => entry.endpoint));
    const removable = endpoints.filter((endpoint) => !kept.has(endpoint.name));
    const steps = removable.flatMap((endpoint) => endpoint.records);
    for (const endpoint of removable) endpoint.closeFds();
    // And the fds this process opened on the caller's copies of them (attachSandbox's endpoints).
    const record = networkRecord(this);
    if (record !== undefined) closeRecordQueueFds(record, removable);
    const report: UndoReport = {
      ...(await undoRecords(this.handle, steps, undefined, completedRecords(removable), undoOf)),
      ...(stillPlugged.length > 0 ? { stillPlugged } : {}),
    };
    // What went is forgotten; what the kernel refused stays recorded on its endpoint.
    for (const endpoint of removable) {
      if (endpoint.keepLeft(report.left)) continue;
      // A physical NIC goes back to its host driver once its plumbing is gone (network/vfio.ts).
      if (endpoint instanceof PhysicalEndpoint) endpoint.releaseHostDevice();
      const position = this.list.indexOf(endpoint);
      if (position >= 0) this.list.splice(position, 1);
    }
    return report;
  }

  save(): NetworkState {
    return {
      version: NETWORK_STATE_VERSION,
      config: this.config,
      endpoints: this.list.map((endpoint) => endpoint.save()),
    };
  }

  /** `entry` as open()'s. */
  static load(
    state: NetworkState,
    sandboxId = 'sandbox',
    entry: string | OpenedNamespace = state.config.namespacePath,
    /**
     * The path the namespace was reached at when the recorded one no longer leads there (a holder's
     * /proc/PID/ns/net): what errors and the commands detach quotes name, so that a pasted command
     * acts where detach did, never in a namespace mounted at the recorded path since.
     */
    reachedAt: string = state.config.namespacePath,
  ): Network {
    if (state.version !== NETWORK_STATE_VERSION) {
      throw new EndpointStateError(
        `network state version ${state.version} is not ${NETWORK_STATE_VERSION}`,
        state.version,
      );
    }
    refuseHostNamespaceUnlessShared(state.config); // never the host namespace (nodes, issue 12)
    const network = new Network(
      state.config,
      openHandleRefusingHost(state.config, entry, reachedAt),
      sandboxId,
      entryPathOf(entry),
    );
    for (const endpointState of state.endpoints) network.list.push(endpointFromState(endpointState));
    return network;
  }

  /** Settles once the handle's fds are closed (NetlinkHandle.close). */
  close(): Promise<void> {
    return this.handle.close();
  }

  /** `using network = await Network.open(...)` closes it at the end of the block. */
  [Symbol.dispose](): void {
    void this.close();
  }
}

/**
 * The handle every change of the network goes through, refused when it talks to the namespace vcnet
 * itself runs in (nodes, issue 12). The path check before it (refuseHostNamespaceUnlessShared) only
 * answers early with the path's name: the path is looked up again by the open (or, with an fd's
 * /proc/self/fd/N, was looked up once before), and a symbolic link a user controls can name the pod
 * one moment and the host the next. So the decision is made on the namespace of the handle's own
 * socket (SIOCGSKNS), the one every request then reaches, whatever any path names by now (without
 * CAP_NET_ADMIN, on the entry path: attach, detach, gc and vcnet-cni give the fd they opened).
 */
function openHandleRefusingHost(
  config: NetworkConfig,
  entry: string | OpenedNamespace,
  label = config.namespacePath,
): NetlinkHandle {
  const entryPath = entryPathOf(entry);
  const handle = typeof entry === 'string' ? Handle.open(entry, label) : entry.netlinkHandle(label);
  if (config.disableNewNetns) return handle;
  try {
    if (isHostNamespace(socketNamespacePath(handle) ?? entryPath))
      throw new HostNamespaceError(config.namespacePath, 'plumb a sandbox');
  } catch (error) {
    handle.close();
    throw error;
  }
  return handle;
}

function entryPathOf(entry: string | OpenedNamespace): string {
  return typeof entry === 'string' ? entry : entry.entryPath;
}

/**
 * /proc/self/fd/N of the namespace the handle's socket is in, or undefined when the kernel does not
 * say: SIOCGSKNS needs CAP_NET_ADMIN there, as every change through the socket does, so a vcnet that
 * lacks it changes nothing there either (the entry path, an fd attach and detach opened, decides).
 */
function socketNamespacePath(handle: NetlinkHandle): string | undefined {
  try {
    const fd = handle.namespaceFd();
    return fd === undefined ? OWN_NAMESPACE_PATH : `/proc/self/fd/${fd}`;
  } catch (error) {
    if (error instanceof SystemCallError && (error.errno === 'EPERM' || error.errno === 'EACCES')) return undefined;
    throw error;
  }
}

export function endpointFromState(
  state: EndpointState,
  options: Pick<CreateEndpointOptions, 'hostRoots'> = {},
): Endpoint {
  const { index, properties, pair } = state;
  let endpoint: Endpoint;
  switch (state.type) {
    case 'virtual':
      endpoint = new VethEndpoint(index, properties, pair);
      break;
    case 'macvlan':
      endpoint = new BridgedMacvlanEndpoint(index, properties, pair);
      break;
    case 'ipvlan':
      endpoint = new IpvlanEndpoint(index, properties, pair);
      break;
    case 'tuntap':
      endpoint = new TuntapEndpoint(index, properties, pair);
      break;
    case 'macvtap':
      endpoint = new MacvtapEndpoint(index, properties, undefined);
      break;
    case 'tap':
      endpoint = new TapEndpoint(index, properties, undefined);
      break;
    case 'physical':
      endpoint = new PhysicalEndpoint(
        index,
        properties,
        (state.details?.pci ?? { address: '' }) as PciDeviceInfo,
        options.hostRoots,
      );
      break;
    case 'vhost-user':
      endpoint = new VhostUserEndpoint(index, properties, String(state.details?.socketPath ?? ''));
      break;
    default:
      throw new EndpointStateError(`unknown endpoint type ${JSON.stringify(state.type)} in saved state`, state.type);
  }
  endpoint.restore(state);
  return endpoint;
}

/**
 * The records of endpoints whose attach completed (plumbing there, not `pending`): what they left is
 * known. An attach in this process that failed has only its pending steps (no plumbing).
 */
function completedRecords(endpoints: readonly Endpoint[]): Set<PlumbingStep> {
  return new Set(
    endpoints.flatMap((endpoint) =>
      endpoint.plumbing && !isUnfinished(endpoint.plumbing) ? endpoint.plumbing.steps : [],
    ),
  );
}
