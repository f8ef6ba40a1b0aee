/**
 * What every internetworking model needs while it builds: the namespace's handle, the queue count,
 * vhost and rate-limit settings, and a transaction that records each change it makes so a failure
 * half way undoes exactly what was done.
 */
import { existsSync } from 'node:fs';
import { SystemCallError, VcnetError } from '../../errors.js';
import { nativeDevices } from '../../native/devices.js';
import type { Link } from '../../netlink/codec/link.js';
import type { Qdisc } from '../../netlink/codec/traffic-control.js';
import type { ChangeBatch, NetlinkHandle } from '../../netlink/handle.js';
import { type PlumbingStep, undoPlumbing, VCNET_LINK_GROUP } from '../plumbing.js';
import type { RateLimit } from '../rate-limit.js';

export const VHOST_NET_DEVICE = '/dev/vhost-net';

export interface AttachHooks {
  /** Called after the tap exists and before the tc plumbing is sent (tests inject failures here). */
  afterTapCreated?: (tapName: string) => Promise<void> | void;
}

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
  /** The namespace's qdiscs when the attach started (one dump for all endpoints). */
  qdiscs: Qdisc[];
  hooks?: AttachHooks;
  /**
   * Told the steps an attach has made or is about to send, before it sends them, so a crash in the
   * middle leaves a record that detach and gc can undo (undo tolerates steps that never happened).
   */
  journal?: (steps: PlumbingStep[]) => void;
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
}

export class AttachError extends VcnetError {
  constructor(endpoint: string, cause: Error, rolledBack: boolean) {
    super(
      'VCNET_ATTACH_FAILED',
      `attaching ${endpoint} failed: ${cause.message}${rolledBack ? ' (everything it had made was removed)' : ''}`,
      {
        value: endpoint,
        hint: (cause as VcnetError).hint ?? 'see the cause; the namespace is as it was before the attach',
        cause,
      },
    );
  }
}

/**
 * A list of changes with their undo records. `commit()` sends the batch; if any change was refused,
 * everything recorded so far (including earlier commits) is undone and the first refusal is thrown.
 */
export class PlumbingTransaction {
  readonly steps: PlumbingStep[] = [];
  private batch: ChangeBatch;
  private pending: Array<PlumbingStep | undefined> = [];

  constructor(readonly context: PlumbingContext) {
    this.batch = context.handle.changes();
  }

  /** Records a step made outside netlink (the tap, created by ioctl). */
  record(step: PlumbingStep): void {
    this.steps.push(step);
    this.context.journal?.([...this.steps]);
  }

  /** Queues a change; `undo` is recorded only if the kernel accepts it. */
  add(change: (batch: ChangeBatch) => void, undo?: PlumbingStep): void {
    change(this.batch);
    this.pending.push(undo);
  }

  async commit(): Promise<void> {
    const batch = this.batch;
    const pending = this.pending;
    this.batch = this.context.handle.changes();
    this.pending = [];
    this.context.journal?.([...this.steps, ...pending.filter((step): step is PlumbingStep => step !== undefined)]);
    const outcomes = await batch.send();
    let failure: Error | undefined;
    outcomes.forEach((outcome, position) => {
      if (outcome.ok) {
        const undo = pending[position];
        if (undo) this.steps.push(undo);
      } else {
        failure ??= outcome.error;
      }
    });
    if (failure) throw failure;
  }

  async rollback(): Promise<void> {
    await undoPlumbing(this.context.handle, this.steps);
  }
}

/** What a model itself reports; buildInTransaction adds the steps, fds and queues. */
export type ModelPlumbing = Pick<AttachedPlumbing, 'model' | 'tapName' | 'tapIndex' | 'guestHardwareAddress'> & {
  tapDevicePath?: string;
};

/**
 * Runs a model's build in a transaction. On success it opens the vhost fds and returns the whole
 * record; on any failure it closes the fds it holds and undoes every step recorded so far.
 */
export async function buildInTransaction(
  context: PlumbingContext,
  build: (transaction: PlumbingTransaction, holdFds: (fds: number[]) => void) => Promise<ModelPlumbing>,
): Promise<AttachedPlumbing> {
  const transaction = new PlumbingTransaction(context);
  const tapFds: number[] = [];
  let vhostFds: number[] = [];
  try {
    const built = await build(transaction, (fds) => tapFds.push(...fds));
    vhostFds = openVhostFds(context);
    return { ...built, steps: transaction.steps, tapFds, vhostFds, queues: context.queues };
  } catch (error) {
    closeFds(tapFds);
    closeFds(vhostFds);
    await transaction.rollback();
    throw error;
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

export function vhostNetAvailable(): boolean {
  return existsSync(VHOST_NET_DEVICE);
}

export function openVhostFds(context: PlumbingContext): number[] {
  if (context.vhostNet === 'off' || !context.keepFds || !vhostNetAvailable()) return [];
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

/** A link known by index and name, which is all the plumbing needs. */
export type LinkReference = Pick<Link, 'index' | 'name'>;

/** Creates the tap by ioctl (rtnetlink cannot create tun devices) and records it. */
export function createTap(transaction: PlumbingTransaction, name: string): { fds: number[]; link: LinkReference } {
  const { context } = transaction;
  let created: { fds: number[]; index: number };
  try {
    created = nativeDevices.createTun(context.namespacePath, name, {
      tap: true,
      vnetHdr: true,
      multiQueue: context.queues > 1,
      queues: context.queues,
      // Persist so the tap outlives this process (the CLI exits before the VM starts).
      persist: true,
      keepFds: context.keepFds,
    });
  } catch (error) {
    throw new SystemCallError(`create tap ${name}`, error as NodeJS.ErrnoException);
  }
  transaction.record({ step: 'create-link', name, kind: 'tun' });
  return { fds: created.fds, link: { index: created.index, name } };
}

export function closeFds(fds: number[]): void {
  for (const fd of fds) {
    try {
      nativeDevices.closeFd(fd);
    } catch {
      // already closed
    }
  }
}

/** Marks a link as vcnet's (IFLA_GROUP), sets MTU and brings it up, in the transaction's batch. */
export function configureCreatedLink(transaction: PlumbingTransaction, link: LinkReference, mtu: number): void {
  transaction.add((batch) =>
    batch.setLink(link.index, { mtu, up: true, group: VCNET_LINK_GROUP }, `set up ${link.name}`),
  );
}
