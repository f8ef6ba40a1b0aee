/**
 * The running VM of a Cloud Hypervisor or Firecracker sandbox, for add-iface, del-iface and watch.
 *
 * Cloud Hypervisor hot-plugs NICs through its API socket (vm.add-net with the tap fds, vm.remove-device),
 * with the limiter from configuration.toml in each NIC. Firecracker configures network devices only
 * before boot: once its VM runs (an API or agent socket is recorded), every change is refused before
 * anything is made, instead of plumbing the host and leaving the VM without the NIC.
 */
import { AgentClient } from '../agent/client.js';
import { VcnetError } from '../errors.js';
import { cloudHypervisorRateLimiterConfig } from '../hypervisor/cloud-hypervisor.js';
import { CloudHypervisorClient, CloudHypervisorHotplugTarget } from '../hypervisor/cloud-hypervisor-client.js';
import type { HotplugTarget } from '../hypervisor/device.js';
import { defaultQmpConnectTimeoutMs } from '../hypervisor/qmp.js';
import { askVmm, cloudHypervisorPingFailure } from '../network/sandbox-vmm-wait.js';
import type { SandboxState } from '../network/state/records.js';
import { CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS } from '../network/unfinished-attach.js';
import { testSeam, waitThroughSeam } from '../test-seams.js';

/**
 * A NIC cannot be added to or removed from a running Firecracker VM (`VCNET_HYPERVISOR_UNSUPPORTED`):
 * Firecracker has no hot-plug. Nothing was changed.
 */
export class FirecrackerNoHotplugError extends VcnetError {
  static override readonly errorName: string = 'FirecrackerNoHotplugError';
  constructor(sandbox: string) {
    super(
      'VCNET_HYPERVISOR_UNSUPPORTED',
      `sandbox ${sandbox} runs Firecracker, which configures network devices only before boot: nothing was changed`,
      {
        value: sandbox,
        hint: 'give the interfaces to the sandbox before its VM boots (vcnet attach before InstanceStart), or use QEMU or Cloud Hypervisor for NIC hot-plug',
      },
    );
  }
}

/** Refuses a change to a Firecracker sandbox whose VM runs (its API or agent socket is recorded). */
export function refuseRunningFirecracker(state: SandboxState): void {
  if (state.hypervisor?.kind === 'firecracker' && (state.hypervisor.controlSocket || state.agentSocket)) {
    throw new FirecrackerNoHotplugError(state.id);
  }
}

/** How long connecting to a sandbox's agent is tried, in all, while its socket is missing or refusing. */
export const AGENT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Test seam (never set in production; src/test-seams.ts): given AGENT_CONNECT_TIMEOUT_MS, returns the
 * wait to use, so a test whose agent never comes need not sit out the whole of it. The connect error
 * says the attempts and time it actually took.
 */
const agentConnectWaitSeam = testSeam<(productMs: number) => number>('agentConnectWait');

export function setAgentConnectWaitTestHook(hook: ((productMs: number) => number) | undefined): void {
  agentConnectWaitSeam.set(hook);
}

/** How long a sandbox's agent connect is tried in all: AGENT_CONNECT_TIMEOUT_MS (or a test seam's). */
export function agentConnectWaitMs(): number {
  return waitThroughSeam(agentConnectWaitSeam, AGENT_CONNECT_TIMEOUT_MS);
}

/**
 * The Cloud Hypervisor VM through its API socket and the guest agent, when both are recorded;
 * `agentConnectTimeoutMs` bounds the agent's connect (default AGENT_CONNECT_TIMEOUT_MS).
 *
 * Cloud Hypervisor must answer vmm.ping, which changes nothing, within `pingTimeoutMs` (default
 * VCNET_QMP_CONNECT_TIMEOUT or 30 s) before anything changes: its API serves one request at a time,
 * so a VMM slow or hung on another answers none, and a plug sent to it waited the client's 30 s with
 * the host side half built. No answer in time is thrown (a CloudHypervisorConnectionError 'timeout'),
 * and so is a VM gone (its API socket not there or refusing: 'unreachable', vmGone), before the
 * agent's connect: that VM's agent socket went with it, and waiting for it made del-iface and the
 * watch fail after the agent's 10 s where QEMU's gone QMP lets them remove the host side alone. Any
 * other failure (an error status) is left to the plug or unplug, which says what it finds as before.
 * The plugs and unplugs that follow wait
 * CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS for their answer, under the sandbox's lock.
 */
export async function connectCloudHypervisor(
  state: SandboxState,
  agentConnectTimeoutMs: () => number = agentConnectWaitMs,
  pingTimeoutMs: number = defaultQmpConnectTimeoutMs(),
): Promise<VirtualMachine | undefined> {
  const apiSocket = state.hypervisor?.controlSocket;
  if (!apiSocket || !state.agentSocket) return undefined;
  try {
    await askVmm({ kind: 'clh', controlSocket: apiSocket }, pingTimeoutMs);
  } catch (error) {
    if (cloudHypervisorPingFailure(error) !== 'answered') throw error;
  }
  const agent = await AgentClient.connect(state.agentSocket, { deadlineMs: agentConnectTimeoutMs() });
  const limiter = state.network.config.vmmRateLimiter;
  const rateLimiter = limiter ? cloudHypervisorRateLimiterConfig(limiter) : undefined;
  return {
    hotplug: new CloudHypervisorHotplugTarget(
      new CloudHypervisorClient(apiSocket, { timeoutMs: CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS }),
      {
        ...(rateLimiter ? { rateLimiter } : {}),
        ...(state.network.config.nicIommu ? { iommu: true } : {}),
      },
    ),
    agent,
    // Its HTTP API serves each request on its own: nothing is held between them.
    releaseControl: async () => {},
    close: async () => agent.close(),
  };
}

/** The running VM of a sandbox, when its sockets are recorded and answer. */
export interface VirtualMachine {
  hotplug: HotplugTarget;
  agent: AgentClient;
  /**
   * Lets go of the control connection the connect kept for the plugs (QEMU's QMP, which serves one
   * client at a time): called before a long wait on the agent. Later plugs or unplugs (a rollback's)
   * connect anew.
   */
  releaseControl(): Promise<void>;
  /** Closes the agent and what releaseControl closes. */
  close(): Promise<void>;
}
