/**
 * Undoing the endpoints a process stopped part-way through attaching: model 'pending' in the record,
 * left by an add-iface or a watch killed (SIGKILL, OOM) while it attached and hot-plugged a link.
 * `vcnet watch` does it when it starts, `vcnet gc` for a record whose lock is free.
 *
 * Such an endpoint may be in the running VM already: a hot-plug killed right after QEMU took the
 * device (netdev_add, device_add) leaves net<N> and netdev-net<N> there, under the ids the next
 * hot-plug of that index takes. Undoing the host side alone left them behind, and every later
 * hot-plug of the id failed with QEMU's "Duplicate ID" (del-iface no longer knew the name). So the
 * VM the record names is asked first, as del-iface does (QEMU: device_del, wait for DEVICE_DELETED,
 * netdev_del; "not found" is fine: the kill came before the device reached the VM; Cloud
 * Hypervisor: vm.remove-device, 404 is fine), then the host side goes.
 *
 * A VMM whose socket is not there or refuses the connection has stopped, and its NICs with it: the
 * host side goes alone, as before. One that answers but does not release the NIC (a guest that
 * ignores the eject, a QMP socket another client holds) keeps the endpoint, its plumbing and its
 * record (the report's stillPlugged): a record is never dropped of a NIC still in the VM.
 */

import { causeChain } from '../errors.js';
import {
  CloudHypervisorClient,
  CloudHypervisorConnectionError,
  CloudHypervisorHotplugTarget,
} from '../hypervisor/cloud-hypervisor-client.js';
import { controlSocketGone } from '../hypervisor/control-socket-probe.js';
import type { HotplugTarget, NetworkDevice } from '../hypervisor/device.js';
import { QmpConnectionError } from '../hypervisor/errors.js';
import type { QmpClient } from '../hypervisor/qmp.js';
import { QemuHotplugSessions } from '../hypervisor/qmp-network-hotplug.js';
import type { Endpoint } from './endpoint/endpoint.js';
import { isUnfinished } from './model/plumbing-context.js';
import type { Network } from './network.js';
import type { UndoReport } from './plan/undo.js';
import type { HypervisorRecord, SandboxState } from './state/records.js';

/** How long the guest gets to release a NIC, as add-iface, del-iface and watch give it. */
const UNPLUG_TIMEOUT_MS = 20_000;

/**
 * How long a vm.add-net or vm.remove-device waits for Cloud Hypervisor's answer under the sandbox's
 * lock: gc's and watch's undo, add-iface, del-iface and watch's plugs send one only once the VMM
 * answered vmm.ping under that lock (sandbox-vmm-wait.ts, withSandboxAndVm), and Cloud Hypervisor
 * answers either as soon as it has told the guest (DeviceManager::add_net and remove_device do not
 * wait for the guest): milliseconds. The bound is for a VMM that hangs in between, which would
 * otherwise keep the lock for the client's 30 s; unanswered, the request may have arrived: the
 * undo's endpoint stays, for gc or the next watch, and a plug is taken out again (best effort).
 */
export const CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS = 5_000;

/** The endpoints of a record left unfinished by an attach that was killed ('pending'). */
export function unfinishedEndpoints(network: Network): Endpoint[] {
  return network.endpoints().filter((endpoint) => isUnfinished(endpoint.plumbing));
}

/** Whether a record says an attach that has not completed: its own (`attaching`), or an endpoint's. */
export function hasUnfinishedAttach(state: SandboxState): boolean {
  return state.attaching === true || state.network.endpoints.some((endpoint) => isUnfinished(endpoint.plumbing));
}

/** A VMM an undo unplugs from: QEMU (its QMP socket) or Cloud Hypervisor (its API socket). */
export interface VmmToUnplugFrom {
  kind: 'qemu' | 'clh';
  controlSocket: string;
}

/**
 * What the undo (gc's, watch's) of a live sandbox's unfinished hot-plug unplugs through: the VMM the
 * record names, if it is one that takes NICs after boot (Firecracker plugs nothing then).
 */
export function vmmToUnplugFrom(state: SandboxState): VmmToUnplugFrom | undefined {
  // An attach killed before its last write handed nothing to a VM.
  if (state.attaching === true || !hasUnfinishedAttach(state)) return undefined;
  const { kind, controlSocket } = state.hypervisor ?? {};
  return (kind === 'qemu' || kind === 'clh') && controlSocket ? { kind, controlSocket } : undefined;
}

/**
 * Undoes `endpoints` (unfinished ones of a live sandbox record): unplugged first from the VM
 * `hypervisor` names, when it runs, then their host side removed. An endpoint the VM did not release
 * stays in the network with all its records (the report's stillPlugged says why). `qmp`: a QEMU's
 * QMP connection the caller already greeted under the sandbox's lock (gc's and watch's, after their
 * wait for a busy QMP without the lock), for the unplugs, which otherwise connect themselves; the
 * caller closes it. A Cloud Hypervisor's vm.remove-device waits CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS.
 */
export function undoUnfinishedEndpoints(
  network: Network,
  endpoints: readonly Endpoint[],
  hypervisor: HypervisorRecord | undefined,
  qmp?: QmpClient,
): Promise<UndoReport> {
  const vm = recordedVm(hypervisor, qmp);
  return vm ? network.removeEndpoints(endpoints, vm, { requireUnplug: true }) : network.removeEndpoints(endpoints);
}

/** Why an endpoint `undoUnfinishedEndpoints` kept was not undone, for notices and gc's report. */
export function notUndoneReason(endpoint: Endpoint, report: UndoReport): string {
  const plugged = report.stillPlugged?.find((entry) => entry.endpoint === endpoint.name);
  if (plugged) {
    return `${plugged.deviceId} may still be in the VM, so its record and plumbing stay: ${plugged.error.message}`;
  }
  return report.failures.map((failure) => failure.message).join('; ');
}

/** The VM a sandbox record names, for unplugging only; undefined when it names none vcnet can reach. */
function recordedVm(hypervisor: HypervisorRecord | undefined, qmp: QmpClient | undefined): HotplugTarget | undefined {
  const socket = hypervisor?.controlSocket;
  if (!socket) return undefined;
  if (hypervisor.kind === 'qemu') {
    const sessions = new QemuHotplugSessions(socket, { timeoutMs: UNPLUG_TIMEOUT_MS });
    return new UnplugIfRunning(qmp ? sessions.useConnection(qmp) : sessions, socket);
  }
  if (hypervisor.kind === 'clh') {
    return new UnplugIfRunning(
      new CloudHypervisorHotplugTarget(
        new CloudHypervisorClient(socket, { timeoutMs: CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS }),
      ),
      socket,
    );
  }
  // Firecracker plugs nothing after boot: a pending endpoint never reached its VM.
  return undefined;
}

/**
 * Unplugs through `vm`; a VM that is gone (its socket not there, or nobody listening, also when that
 * shows only after the connection closed mid-command: vmGoneAfter) holds no NIC, so the unplug is
 * done. del-iface and add-iface's undo use it as an unfinished attach's undo does.
 */
export class UnplugIfRunning implements HotplugTarget {
  /** The error by which an unplug found the VM gone, if one did (for the caller to say so). */
  goneBy: Error | undefined;

  constructor(
    private readonly vm: HotplugTarget,
    /** The VM's control socket, looked at when a connection is lost mid-command. */
    private readonly controlSocket?: string,
  ) {}

  hotplugNetworkDevice(device: NetworkDevice): Promise<{ pciPath?: string }> {
    return Promise.reject(new Error(`an undo plugs nothing (asked to plug ${device.id})`));
  }

  async unplugNetworkDevice(id: string): Promise<void> {
    try {
      await this.vm.unplugNetworkDevice(id);
    } catch (error) {
      if (!(await vmGoneAfter(error, this.controlSocket))) throw error;
      this.goneBy = error as Error;
    }
  }
}

/**
 * vmGone, or a connection to the VMM lost in the middle of a command (QMP closed before the reply or
 * the event, Cloud Hypervisor's reset) when its control socket now refuses or is not there: a VMM
 * killed mid-command closes the connection first. A socket still taking connections (a VMM alive
 * but silent, one that timed out) is not gone: the error stands.
 */
export async function vmGoneAfter(error: unknown, controlSocket: string | undefined): Promise<boolean> {
  if (vmGone(error)) return true;
  if (controlSocket === undefined) return false;
  const lostConnection = causeChain(error).some(
    (link) => link instanceof QmpConnectionError || link instanceof CloudHypervisorConnectionError,
  );
  return lostConnection && controlSocketGone(controlSocket, { settle: true });
}

/**
 * Whether the VMM is not running: its socket is not there (ENOENT) or nobody listens on it
 * (ECONNREFUSED). A socket that accepts and does not answer (another QMP client holds it, a hung
 * VMM) is no proof: the NIC may be in the VM.
 */
export function vmGone(error: unknown): boolean {
  if (error instanceof CloudHypervisorConnectionError) return error.failure === 'unreachable';
  if (!(error instanceof QmpConnectionError)) return false;
  // One that names the sandbox (connectVirtualMachine) has the connection's own as its cause.
  if (error.cause instanceof QmpConnectionError) return vmGone(error.cause);
  const code = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}
