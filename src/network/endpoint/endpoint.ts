/**
 * An endpoint is one pod interface as the VM will see it: its properties, its guest name and MAC,
 * the host plumbing an internetworking model built for it, and (once plugged) its PCI path.
 */
import { RollbackIncompleteError, VcnetError } from '../../errors.js';
import type { HotplugTarget, NetworkDevice } from '../../hypervisor/device.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import type { NetworkInterfacePair } from '../interface-pair.js';
import type { InterworkingModel } from '../interworking-model.js';
import type { AttachedPlumbing, PlumbingContext } from '../model/plumbing-context.js';
import { AttachError, attachByPlan, isUnfinished, planEndpoint } from '../model/plumbing-context.js';
import type { EndpointType, NetworkInfo } from '../network-info.js';
import { closeFds } from '../plan/link-creation.js';
import { MacvtapDeviceError, openVerifiedMacvtapQueues, verifiedMacvtapNode } from '../plan/macvtap-index.js';
import { withImpliedRecords } from '../plan/older-records.js';
import type { AttachRequest } from '../plan/plan-attach.js';
import { intentOf, type PlanIntent } from '../plan/plan-intent.js';
import type { Plan, PlumbingStep } from '../plan/types.js';
import {
  type AttachOperation,
  describeHandedOver,
  type UndoOf,
  type UndoReport,
  undoLeftSome,
  undoRecords,
} from '../plan/undo.js';
import { ENDPOINT_STATE_VERSION } from '../state/content-versions.js';
import { noteQueueFds } from './held-queue-fds.js';

/** The hypervisor-neutral NIC description handed to src/hypervisor (its NetworkDevice). */
export type VmNetworkDevice = NetworkDevice;

/** What is persisted per endpoint: enough to detach exactly after the process is gone. */
export interface EndpointState {
  /** ENDPOINT_STATE_VERSION; 1 in a record an older vcnet wrote (read as it was, saved as the current one). */
  version: 1 | typeof ENDPOINT_STATE_VERSION;
  type: EndpointType;
  index: number;
  name: string;
  properties: NetworkInfo;
  pair?: NetworkInterfacePair;
  plumbing?: {
    /** 'pending': the process stopped during attach; the steps are what it may have done. */
    model: AttachedPlumbing['model'] | 'pending';
    steps: PlumbingStep[];
    tapName: string;
    tapIndex: number;
    tapDevicePath?: string;
    guestHardwareAddress: string;
    queues: number;
    /** What an undo the kernel refused in part left: fewer steps than the model's attach records. */
    partial?: true;
  };
  pciPath?: string;
  /** The MTU the guest NIC was given (host_mtu): the most the guest can take later. */
  deviceMtu?: number;
  details?: Record<string, unknown>;
}

/** An endpoint record this vcnet cannot read (VCNET_STATE_INVALID). */
export class EndpointStateError extends VcnetError {
  static override readonly errorName: string = 'EndpointStateError';
  constructor(message: string, value: unknown) {
    super('VCNET_STATE_INVALID', message, {
      value,
      hint: 'the state file was written by another vcnet version or edited by hand',
    });
  }
}

/** One pod interface as the VM gets it (createEndpoint makes one per link; Network attaches them). */
export abstract class Endpoint {
  abstract readonly type: EndpointType;
  plumbing: AttachedPlumbing | undefined;
  pciPath: string | undefined;
  /** Steps of an attach still under way (journaled before they are sent). */
  private pendingSteps: PlumbingStep[] | undefined;
  /** The plan build applies, made before the attach (prepareAttach), or why it could not be made. */
  private prepared: { intent: PlanIntent } | { error: unknown } | undefined;
  /**
   * The MTU the guest NIC is given (QEMU's host_mtu, the VMM's mtu): the pod link's when the endpoint
   * was made. The guest driver takes no larger MTU later, so a pod MTU raised above it is capped.
   */
  deviceMtu: number;

  constructor(
    /** Position of the endpoint in the sandbox: names tap<index>_kata and eth<index>. */
    readonly index: number,
    private currentProperties: NetworkInfo,
    readonly pair: NetworkInterfacePair | undefined,
  ) {
    this.deviceMtu = currentProperties.link.mtu;
  }

  /** The pod interface as last seen: link, addresses, routes, neighbours. */
  get properties(): NetworkInfo {
    return this.currentProperties;
  }

  /** Takes the pod interface's new addresses, routes, MTU... (vcnet watch), keeping the same link. */
  updateProperties(info: NetworkInfo): void {
    if (info.link.name !== this.currentProperties.link.name) {
      throw new Error(`endpoint ${this.name} belongs to ${this.currentProperties.link.name}, not ${info.link.name}`);
    }
    this.currentProperties = info;
  }

  /** A guest name given for an endpoint without a pair (add-iface's `name` for a tap, macvtap...). */
  private explicitName: string | undefined;

  /** Guest-facing interface name. */
  get name(): string {
    return this.pair?.name ?? this.explicitName ?? this.properties.link.name;
  }

  set guestName(name: string) {
    this.explicitName = name === this.properties.link.name ? undefined : name;
  }

  /** The MAC the guest NIC gets. */
  get hardwareAddress(): string {
    return (
      this.plumbing?.guestHardwareAddress ?? this.pair?.tap.guestHardwareAddress ?? this.properties.link.address ?? ''
    );
  }

  get model(): InterworkingModel | undefined {
    return this.pair?.model;
  }

  /** What this endpoint asks the plumbing planner for; undefined when the VM uses the device as it is. */
  attachRequest(): AttachRequest | undefined {
    return undefined;
  }

  /** The plan of this endpoint's plumbing (nothing is changed); undefined when there is nothing to build. */
  async plan(context: PlumbingContext): Promise<Plan | undefined> {
    const request = this.attachRequest();
    return request ? planEndpoint(context, request) : undefined;
  }

  /**
   * Plans the attach ahead and takes the plan's intent (every record it may leave, its links'
   * indexes chosen) as this endpoint's pending record: Network.addEndpoints then journals the
   * intents of all its endpoints in one record write, and the executor writes none per endpoint.
   * A planning error is kept for attach to throw, where and as it would have been without this.
   */
  async prepareAttach(context: PlumbingContext): Promise<void> {
    if (this.plumbing) return;
    try {
      const plan = await this.plan(context);
      if (!plan) return;
      const intent = intentOf(plan);
      this.prepared = { intent };
      // A plan that changes a pod link before it makes a link of its own is journaled by the
      // executor before its first batch instead (PlanIntent.journaledAhead): listed, with nothing yet.
      this.pendingSteps = intent.journaledAhead ? intent.records : [];
    } catch (error) {
      this.prepared = { error };
    }
  }

  /** Forgets an attach prepared but never started (an endpoint before it failed): nothing was made. */
  dropPrepared(): void {
    this.prepared = undefined;
    this.pendingSteps = undefined;
  }

  /**
   * The prepared plan's intent, taken once by build (a planning error is thrown here).
   * @internal
   */
  protected takePreparedIntent(): PlanIntent | undefined {
    const prepared = this.prepared;
    this.prepared = undefined;
    if (prepared && 'error' in prepared) throw prepared.error;
    return prepared?.intent;
  }

  /**
   * Refuses settings this endpoint cannot take (a rate limit on a vhost-user or physical NIC) before
   * anything is made. attach() runs it, and so does the dry run (Network.planEndpoints): a plan is
   * never printed for an endpoint attach would refuse.
   */
  checkAttach(_context: PlumbingContext): void {}

  /** Builds the host plumbing for this endpoint (buildByPlan, or the device as it is). */
  protected abstract build(context: PlumbingContext): Promise<AttachedPlumbing>;

  /** The plan of attachRequest() (the one prepareAttach made, if it did), applied. */
  protected buildByPlan(context: PlumbingContext): Promise<AttachedPlumbing> {
    const intent = this.takePreparedIntent();
    const request = this.attachRequest();
    if (!request) throw new Error(`${this.type} endpoint ${this.properties.link.name} has nothing to build`);
    return attachByPlan(context, request, intent);
  }

  /**
   * Builds this endpoint's plumbing: a step of Network.addEndpoints, which journals it in the record.
   * @internal
   */
  async attach(context: PlumbingContext): Promise<AttachedPlumbing> {
    if (this.plumbing) return this.plumbing;
    let handedOver: string[] = [];
    const journaled: PlumbingContext = {
      ...context,
      journal: (steps) => {
        this.pendingSteps = steps;
        context.journal?.(steps);
      },
      handedOver: (kept) => {
        handedOver = kept.map(describeHandedOver);
        context.handedOver?.(kept);
      },
    };
    try {
      this.checkAttach(journaled);
      this.plumbing = await this.build(journaled);
    } catch (error) {
      if (error instanceof RollbackIncompleteError) {
        // The undo was refused: keep exactly what is left, for detach and gc. The error says what
        // to do about the refusal too, as this type knows it (the cause is what to fix first).
        this.pendingSteps = error.left as PlumbingStep[];
        const hint = this.attachFailureHint(error.cause as Error);
        throw hint === undefined ? error : error.withCauseHint(hint);
      }
      this.pendingSteps = undefined;
      throw error instanceof AttachError
        ? error
        : new AttachError(
            this.properties.link.name,
            error as Error,
            true,
            this.attachFailureHint(error as Error),
            handedOver,
          );
    }
    this.pendingSteps = undefined;
    return this.plumbing;
  }

  /** What to do about an attach refused with `error`, where this endpoint's type knows better than its hint. */
  protected attachFailureHint(_error: Error): string | undefined {
    return undefined;
  }

  /** Undoes exactly what attach made. Safe to call twice, and after a crash (from loaded state). */
  detach(handle: NetlinkHandle): Promise<UndoReport> {
    return this.undo(handle, 'detach');
  }

  /** detach, or the rollback of an attach that failed (a NIC the VM did not take), whose notices say so. */
  private async undo(handle: NetlinkHandle, undoOf: UndoOf): Promise<UndoReport> {
    const plumbing = this.plumbing;
    if (!plumbing) return { undone: 0, alreadyGone: 0, kept: 0, failures: [], left: [] };
    this.closeFds();
    // A completed attach's records say what it left; a pending one's may have stopped part-way.
    const completed = isUnfinished(plumbing) ? undefined : new Set(plumbing.steps);
    const report = await undoRecords(handle, plumbing.steps, undefined, completed, undoOf);
    this.keepLeft(report.left);
    return report;
  }

  /** Closes the queue fds this process holds (the VM keeps its own copies). */
  closeFds(): void {
    if (!this.plumbing) return;
    closeFds(this.plumbing.tapFds);
    closeFds(this.plumbing.vhostFds);
    this.plumbing.tapFds = [];
    this.plumbing.vhostFds = [];
    noteQueueFds(this);
  }

  /** Forgets the plumbing after a caller undid its steps itself (Network batches all endpoints). */
  markDetached(): void {
    this.closeFds();
    this.plumbing = undefined;
    this.pendingSteps = undefined;
  }

  /** After an undo: forgets what went, keeps the records of what the kernel refused to remove. */
  keepLeft(left: readonly PlumbingStep[]): boolean {
    const mine = new Set<PlumbingStep>([...(this.plumbing?.steps ?? []), ...(this.pendingSteps ?? [])]);
    const kept = left.filter((step) => mine.has(step));
    if (kept.length === 0) {
      this.markDetached();
      return false;
    }
    if (this.plumbing) {
      if (kept.length < this.plumbing.steps.length) this.plumbing.partial = true;
      this.plumbing.steps = kept;
    } else this.pendingSteps = kept;
    return true;
  }

  /**
   * After the undo of a failed attach left some of it: what is left is an unfinished attach's
   * ('pending' in the record), as the executor's own rollback and a refused hot-plug's keep it, so gc
   * finishes it as it finishes theirs (a live sandbox's completed endpoint gc leaves alone).
   * @internal
   */
  markUnfinished(): void {
    if (!this.plumbing) return;
    this.closeFds();
    this.pendingSteps = this.plumbing.steps;
    this.plumbing = undefined;
  }

  /** The records of everything this endpoint may have made (attached, or an attach cut short). */
  get records(): readonly PlumbingStep[] {
    return this.plumbing?.steps ?? this.pendingSteps ?? [];
  }

  /** Attaches and plugs the NIC into a running VM; a failed plug removes the plumbing again. */
  async hotAttach(context: PlumbingContext, target: HotplugTarget): Promise<void> {
    await this.attach(context);
    try {
      const plugged = await target.hotplugNetworkDevice(this.networkDevice());
      this.pciPath = plugged.pciPath;
    } catch (error) {
      await this.undoRefusedPlug(context.handle, error as Error, context.operation);
    }
  }

  /**
   * Undoes the plumbing of a NIC the VM did not take, and throws: the plug's own error when the undo
   * was complete; else RollbackIncompleteError (the plug's error its cause) naming what the kernel
   * refused to undo, and the endpoint keeps the records of that as an unfinished attach's, which
   * Network.addEndpoints keeps listed and journals for detach and gc to finish, as attach's own undo does.
   */
  protected async undoRefusedPlug(
    handle: NetlinkHandle,
    plugError: Error,
    operation: AttachOperation = 'attach',
  ): Promise<never> {
    const records = [...this.records];
    let failures: string[];
    let left: PlumbingStep[];
    let notChecked: PlumbingStep[] = [];
    // Kept for another tool (a qdisc of vcnet's that holds its filter now), in no record: said too.
    let handedOver: string[] = [];
    try {
      const report = await this.undo(handle, operation);
      failures = report.failures.map((failure) => failure.message);
      left = report.left.filter((record) => records.includes(record));
      notChecked = (report.notChecked ?? []).filter((record) => left.includes(record));
      handedOver = (report.keptRecords ?? []).map(describeHandedOver);
    } catch (undoError) {
      // The undo could not even start (its dump of the links refused): nothing is known to be gone.
      failures = [(undoError as Error).message];
      left = records;
    }
    if (left.length === 0) {
      if (handedOver.length === 0) throw plugError;
      throw new AttachError(this.properties.link.name, plugError, true, undefined, handedOver);
    }
    this.closeFds();
    this.plumbing = undefined;
    this.pendingSteps = left;
    throw undoLeftSome(`hot-plug of ${this.properties.link.name}`, plugError, {
      failures,
      left,
      notChecked,
      handedOver,
    });
  }

  async hotDetach(handle: NetlinkHandle, target: HotplugTarget): Promise<UndoReport> {
    await target.unplugNetworkDevice(this.deviceId);
    this.pciPath = undefined;
    return this.detach(handle);
  }

  get deviceId(): string {
    return `net${this.index}`;
  }

  /**
   * This NIC for a hypervisor this process starts or hot-plugs into (spawnQemu, QMP, Cloud
   * Hypervisor's API): a tap by name, or the queue fds this process holds. A macvtap cannot be
   * opened by name, so one without open queues is refused: openQueueFds() opens them here, and
   * hypervisorDeviceConfig() serves a launcher that opens /dev/tapN itself. `openedByLauncher`
   * leaves the fds out (that launcher numbers its own).
   */
  networkDevice(options: { openedByLauncher?: boolean } = {}): VmNetworkDevice {
    const device = this.describeDevice();
    if (options.openedByLauncher) {
      delete device.fds;
      delete device.vhostFds;
    } else if (this.plumbing?.tapDevicePath !== undefined && device.fds === undefined) {
      throw new MacvtapDeviceError(
        `${this.plumbing.tapName} (${this.name}) is a macvtap: a hypervisor cannot open it by name, and this process holds none of its ${this.plumbing.tapDevicePath} queues`,
        this.plumbing.tapName,
        `call openQueueFds() first (spawnQemu and hot-plug then pass them; closeFds() once the VMM has them), or take hypervisorDeviceConfig() for a launcher that opens ${this.plumbing.tapDevicePath} itself`,
      );
    }
    return device;
  }

  /**
   * Opens a macvtap endpoint's /dev/tapN once per queue in this process (checked to be its own
   * device), for networkDevice(); a no-op for other endpoints or when they are open already.
   */
  openQueueFds(): void {
    const plumbing = this.plumbing;
    if (plumbing?.tapDevicePath === undefined || plumbing.tapFds.length > 0) return;
    plumbing.tapFds = openVerifiedMacvtapQueues(verifiedMacvtapNode(plumbing.tapIndex), plumbing.queues);
    // Closed by the detach or del-iface of the sandbox's record too, if the caller never does.
    noteQueueFds(this);
  }

  protected describeDevice(): VmNetworkDevice {
    const plumbing = this.plumbing;
    const device: VmNetworkDevice = {
      id: this.deviceId,
      queues: plumbing?.queues ?? 1,
      guestMac: this.hardwareAddress,
      mtu: this.deviceMtu,
    };
    if (plumbing) {
      device.tapName = plumbing.tapName;
      if (plumbing.tapFds.length > 0) device.fds = plumbing.tapFds;
      if (plumbing.vhostFds.length > 0) device.vhostFds = plumbing.vhostFds;
    }
    return device;
  }

  save(): EndpointState {
    const state: EndpointState = {
      version: ENDPOINT_STATE_VERSION,
      type: this.type,
      index: this.index,
      name: this.name,
      properties: this.properties,
      deviceMtu: this.deviceMtu,
    };
    if (this.pair) state.pair = this.pair;
    if (this.pciPath) state.pciPath = this.pciPath;
    if (this.plumbing) {
      const { tapFds: _fds, vhostFds: _vhost, ...kept } = this.plumbing;
      state.plumbing = kept;
    } else if (this.pendingSteps) {
      state.plumbing = {
        model: 'pending',
        steps: this.pendingSteps,
        tapName: '',
        tapIndex: 0,
        guestHardwareAddress: '',
        queues: 1,
      };
    }
    return state;
  }

  /** Restores what save() wrote; fds are not kept across processes. */
  restore(state: EndpointState): void {
    if (state.version !== ENDPOINT_STATE_VERSION && state.version !== 1) {
      throw new EndpointStateError(
        `endpoint state version ${state.version} is not ${ENDPOINT_STATE_VERSION}`,
        state.version,
      );
    }
    this.pciPath = state.pciPath;
    // Records before deviceMtu: the recorded MTU is the best known bound (watch only ever lowered it).
    this.deviceMtu = state.deviceMtu ?? state.properties.link.mtu;
    if (!this.pair && state.name) this.guestName = state.name;
    // An older build's record may leave out a change its attach made (older-records.ts): added here,
    // so detach, gc, CNI DEL and their dry runs undo it as they undo a record of this build.
    this.plumbing = state.plumbing
      ? {
          ...state.plumbing,
          model: state.plumbing.model as AttachedPlumbing['model'],
          steps: withImpliedRecords(state.properties.link, state.plumbing.steps),
          tapFds: [],
          vhostFds: [],
        }
      : undefined;
  }
}
