/**
 * What every internetworking model needs while it builds: the namespace's handle and scan, the queue
 * count, vhost and rate-limit settings; and the one way a model builds (attachByPlan): plan
 * (plan/plan-attach.ts), then apply (plan/apply.ts), which journals, sends and rolls back. The models
 * are requests to the planner: tcfilter (Kata's default: a tap beside the pod interface and a u32
 * filter on each side's ingress redirecting every frame to the other), macvtap (a macvtap on the pod
 * interface, which gives it its MAC and addresses) and none (only a tap, wired up by the operator).
 */
import { channels, publish } from '../../diagnostics.js';
import { handedOverFate, hintFromCause, SystemCallError, VcnetError } from '../../errors.js';
import { probeVhostNet, VHOST_NET_DEVICE } from '../../hypervisor/vhost-net-probe.js';
import { nativeDevices } from '../../native/devices.js';
import { CLSACT_INGRESS_PARENT, INGRESS_HANDLE, TC_H_INGRESS } from '../../netlink/codec/tc/message.js';
import type { Qdisc } from '../../netlink/codec/tc/qdisc.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { applyPlan } from '../plan/apply.js';
import { closeFds } from '../plan/link-creation.js';
import { openVerifiedMacvtapQueues, verifiedMacvtapNode } from '../plan/macvtap-index.js';
import { type AttachRequest, type PlanSnapshot, planAttach } from '../plan/plan-attach.js';
import type { KeptRecord } from '../plan/plan-detach.js';
import type { PlanIntent } from '../plan/plan-intent.js';
import type { Plan, PlumbingStep, RateLimit } from '../plan/types.js';
import { type AttachOperation, rollBackAttach } from '../plan/undo.js';

/**
 * What every interworking model's attach needs: the namespace's handle and path, queue count, whether to keep
 * queue fds, vhost-net, the taps' owner and the journal. For custom models; most callers use `attachSandbox`.
 */
export interface PlumbingContext {
  handle: NetlinkHandle;
  namespacePath: string;
  /** Queues per NIC: the number of vCPUs when > 1 (multi-queue tap), else 1. */
  queues: number;
  /** Keep the tap/macvtap queue fds open and return them (for a hypervisor started by this process). */
  keepFds: boolean;
  /** 'auto' opens /dev/vhost-net when it exists; 'off' never does. */
  vhostNet: 'auto' | 'off';
  rateLimit?: RateLimit;
  /** The uid and gid each tap gets; with neither, this process's euid and egid (tap-owner.ts). */
  tapOwner?: number;
  tapGroup?: number;
  /** The namespace's qdiscs when the attach started (one dump for all endpoints). */
  qdiscs: Qdisc[];
  /** The scan the attach started from; models that need more of it than qdiscs dump it when missing. */
  snapshot?: PlanSnapshot;
  /**
   * Told the records of every change an attach has made or is about to send, before it sends them,
   * so a crash in the middle leaves a record that detach and gc can undo.
   */
  journal?: (steps: PlumbingStep[]) => void;
  /**
   * Told what the rollback of a failed attach left in place on purpose, and why: a qdisc it added
   * that another tool has put its own filter in since (only vcnet's filters went). It is that tool's
   * now, in no record, as detach leaves it; the attach's error says it stays.
   */
  handedOver?: (kept: readonly KeptRecord[]) => void;
  /** The command the attach is part of, which a rollback's notices name (default attach). */
  operation?: AttachOperation;
}

/** What a model built for one endpoint: enough for the hypervisor, and for an exact detach. */
export interface AttachedPlumbing {
  model: 'tcfilter' | 'macvtap' | 'none' | 'existing' | 'pending';
  steps: PlumbingStep[];
  /** The device the hypervisor uses: a tap name, or a macvtap name. */
  tapName: string;
  tapIndex: number;
  /** /dev/tapN for a macvtap. */
  tapDevicePath?: string;
  tapFds: number[];
  vhostFds: number[];
  guestHardwareAddress: string;
  queues: number;
  /** The steps are what an undo the kernel refused in part left (the record schema asks no others). */
  partial?: true;
}

/**
 * Whether an endpoint's plumbing (built, or as a record keeps it) is an attach's that never completed
 * ('pending': the process stopped during the attach; its steps are what it may have done).
 */
export function isUnfinished(plumbing: { model?: string } | undefined): boolean {
  return plumbing?.model === 'pending';
}

/**
 * An attach step failed (`VCNET_ATTACH_FAILED`); `cause` is what decided (`classifyError(error).code` is its
 * code), and `rolledBack` says everything the attach had made was verified removed.
 */
export class AttachError extends VcnetError {
  static override readonly errorName: string = 'AttachError';
  constructor(
    endpoint: string,
    cause: Error,
    /** Verified: everything the attach had made was removed (but `handedOver`). */
    readonly rolledBack: boolean,
    /** What to do, where the caller knows better than the cause's hint (which is the default). */
    hint?: string,
    /**
     * What the rollback left in place for another tool that put its own in it since, each with why
     * (describeHandedOver: "the ingress qdisc on eth0, which stays: it holds …"). In no record.
     */
    readonly handedOver: readonly string[] = [],
    /**
     * What else the rollback undid, when something of it was handed over ("the endpoint attached
     * before it (eth0)", Network.addEndpoints): the message says whose `handedOver` is.
     */
    readonly alsoUndone?: string,
  ) {
    super(
      'VCNET_ATTACH_FAILED',
      `attaching ${endpoint} failed: ${cause.message}${rolledBack ? ` (${rolledBackSaid(handedOver, alsoUndone)})` : ''}`,
      {
        value: endpoint,
        hint: hint ?? attachFailedHint(hintFromCause(cause), handedOver.length > 0),
        cause,
      },
    );
    this.givenHint = hint;
  }

  /** The hint the caller gave (not the one worked out from the cause), for withHandedOver. */
  private readonly givenHint: string | undefined;

  /**
   * The same failure, after the undo of `undone` (the endpoints the same attach made before this one)
   * handed `handedOver` over too: the message names all of it that stays.
   */
  withHandedOver(undone: string, handedOver: readonly string[]): AttachError {
    return new AttachError(
      String(this.value),
      this.cause as Error,
      this.rolledBack,
      this.givenHint,
      [...this.handedOver, ...handedOver],
      this.alsoUndone === undefined ? undone : `${this.alsoUndone}, ${undone}`,
    );
  }
}

/**
 * The error of an attach that `cause` ended once every one of `endpoints` was attached (a record write
 * after the last, vcnet-cni's device step), whose undo removed everything but `handedOver`: said as
 * the first endpoint's failure, with the others named as undone with it and what stays.
 */
export function completedAttachHandedOver(
  endpoints: readonly string[],
  cause: Error,
  handedOver: readonly string[],
): AttachError {
  const [first = '', ...others] = endpoints;
  const withIt =
    others.length > 0
      ? `the endpoint${others.length > 1 ? 's' : ''} attached with it (${others.join(', ')})`
      : undefined;
  return new AttachError(first, cause, true, undefined, handedOver, withIt);
}

/**
 * An attach's hint: the cause's (what to do about it), else "see the cause"; with what the namespace
 * is left as when the rollback handed something over, which a reader of the hint alone (a CNI error's
 * `details`) must learn too.
 */
function attachFailedHint(causeHint: string | undefined, handedOver: boolean): string {
  if (!handedOver) return causeHint ?? 'see the cause; the namespace is as it was before the attach';
  return `${causeHint ?? 'see the cause'}; the namespace is as it was before the attach but for what another tool holds, which the message names`;
}

/** What a rollback that went as far as it may did: all of it, or all but what another tool holds now. */
function rolledBackSaid(handedOver: readonly string[], alsoUndone: string | undefined): string {
  if (handedOver.length === 0) return 'everything it had made was removed';
  const whose = alsoUndone === undefined ? 'it' : `it and ${alsoUndone}`;
  return `everything ${whose} had made was removed but ${handedOver.join(', and ')}; ${handedOverFate(handedOver)}`;
}

/** The scan a plan needs: the context's, or (library callers that pass only qdiscs) a fresh one. */
async function planSnapshotOf(context: PlumbingContext, request: AttachRequest): Promise<PlanSnapshot> {
  const { handle } = context;
  let snapshot = context.snapshot;
  if (!snapshot) {
    const index = request.source?.index;
    const macvtap = request.model === 'macvtap';
    snapshot = {
      // The links name the other links of a multipath route the macvtap model saves. The others take
      // the tap's MTU from `source` as the caller read it: a dump of the links here cost an attach
      // 130 µs (npm run bench:ab, 1.10x). The network layer passes its scan, with the pod link as it is.
      links: macvtap ? await handle.links() : [],
      qdiscs: context.qdiscs,
      addresses: macvtap ? await handle.addresses({ index }) : [],
      routes: macvtap ? await handle.routes({ table: 'all', outputIndex: index }) : [],
      neighbours: macvtap ? await handle.neighbours({ index }) : [],
      proxyNeighbours: macvtap ? await handle.proxyNeighbours({ index }) : [],
    };
  }
  // tcfilter (or an existing device's rate limit) beside an ingress qdisc the pod link already has:
  // the plan needs its filters' priorities.
  const source = request.source;
  const existing =
    (request.model === 'tcfilter' || request.model === 'existing') && source
      ? snapshot.qdiscs.find((qdisc) => qdisc.index === source.index && qdisc.parent === TC_H_INGRESS)
      : undefined;
  if (existing && source) {
    const parent = existing.kind === 'clsact' ? CLSACT_INGRESS_PARENT : INGRESS_HANDLE;
    snapshot = { ...snapshot, filters: await handle.filters(source.index, parent) };
  }
  return snapshot;
}

/** Plans an endpoint's plumbing (without touching anything). */
export async function planEndpoint(context: PlumbingContext, request: AttachRequest): Promise<Plan> {
  const snapshot = await planSnapshotOf(context, request);
  const plan = planAttach(snapshot, context, { ...request, now: request.now ?? Date.now() });
  // Said for an attach and its dry run alike: both plan here; under the command the user ran (an
  // add-iface's, a watch's), as its rollback's notices are.
  const operation = context.operation ?? 'attach';
  for (const message of plan.warnings ?? []) {
    publish(channels.notice, () => ({ operation, endpoint: request.source?.name ?? '', message }));
  }
  return plan;
}

/**
 * Plans and applies an endpoint's plumbing; on any failure nothing is left (or a record says what is).
 * `intent`: the plan of this request, made and journaled before (Network.addEndpoints journals the
 * intents of all its endpoints in one write), applied as it is.
 */
export async function attachByPlan(
  context: PlumbingContext,
  request: AttachRequest,
  intent?: PlanIntent,
): Promise<AttachedPlumbing> {
  const plan = intent?.plan ?? (await planEndpoint(context, request));
  const applied = await applyPlan(plan, {
    handle: context.handle,
    namespacePath: context.namespacePath,
    keepFds: context.keepFds,
    ...(context.journal ? { journal: context.journal } : {}),
    ...(context.handedOver ? { handedOver: context.handedOver } : {}),
    ...(context.operation ? { operation: context.operation } : {}),
    ...(intent ? { intent } : {}),
  });
  let tapFds = applied.tapFds;
  let vhostFds: number[] = [];
  try {
    const deviceIndex = applied.createdIndexes.get(plan.device.name) ?? plan.device.index ?? 0;
    // An existing device the VM opens through /dev/tapN is a macvtap (the only 'existing' plan today).
    const macvtapLike = plan.model === 'macvtap' || plan.model === 'existing';
    const guestHardwareAddress =
      plan.guestHardwareAddress ?? (await context.handle.linkByIndex(deviceIndex)).address ?? '';
    // The macvtap's /dev/tap<index> is checked by major:minor to be its own before its path is handed out.
    const macvtapNode = macvtapLike ? verifiedMacvtapNode(deviceIndex) : undefined;
    if (macvtapNode && context.keepFds) tapFds = openVerifiedMacvtapQueues(macvtapNode, context.queues);
    vhostFds = openVhostFds(context);
    return {
      model: plan.model,
      steps: applied.records,
      tapName: plan.device.name,
      tapIndex: deviceIndex,
      ...(macvtapNode ? { tapDevicePath: macvtapNode.path } : {}),
      tapFds,
      vhostFds,
      guestHardwareAddress,
      queues: context.queues,
    };
  } catch (error) {
    closeFds(tapFds);
    closeFds(vhostFds);
    return rollBackAttach(
      context.handle,
      applied.records,
      error as Error,
      context.journal,
      context.handedOver,
      context.operation,
    );
  }
}

/** The record of an endpoint the VM uses as it is (an existing macvtap, a physical NIC, vhost-user): nothing to undo. */
export function existingDevicePlumbing(
  context: PlumbingContext,
  device: {
    tapName?: string;
    tapIndex?: number;
    tapDevicePath?: string;
    tapFds?: number[];
    vhostFds?: number[];
    guestHardwareAddress: string;
  },
): AttachedPlumbing {
  return {
    model: 'existing',
    steps: [],
    tapName: device.tapName ?? '',
    tapIndex: device.tapIndex ?? 0,
    ...(device.tapDevicePath ? { tapDevicePath: device.tapDevicePath } : {}),
    tapFds: device.tapFds ?? [],
    vhostFds: device.vhostFds ?? [],
    guestHardwareAddress: device.guestHardwareAddress,
    queues: context.queues,
  };
}

/** Opened as QEMU decides vhost-net (hypervisor/vhost-net-probe.ts): not when off, nor without the device. */
export function openVhostFds(context: Pick<PlumbingContext, 'vhostNet' | 'keepFds' | 'queues'>): number[] {
  if (!context.keepFds || !probeVhostNet(context.vhostNet).available) return [];
  try {
    return nativeDevices.openDevice(VHOST_NET_DEVICE, context.queues);
  } catch (error) {
    throw new SystemCallError(
      `open ${VHOST_NET_DEVICE}`,
      error as NodeJS.ErrnoException,
      'set vhost_net off, or load vhost_net',
    );
  }
}
