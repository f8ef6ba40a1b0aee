/**
 * add-iface's undo after a failed push to the guest runs under the sandbox's lock taken again: the
 * lock was given back during the push, so Cloud Hypervisor may have taken another client's request
 * meanwhile, or hung. vm.remove-device is sent only once vmm.ping answers under the lock, within
 * CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS, as the plugs do (withSandboxAndVm): a VMM that answers no ping
 * keeps the lock for a second, not remove-device's CLOUD_HYPERVISOR_REQUEST_UNDER_LOCK_MS.
 */
import type { HotplugTarget, NetworkDevice } from '../hypervisor/device.js';
import {
  CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS,
  cloudHypervisorPingFailure,
  pingCloudHypervisor,
} from '../network/sandbox-vmm-wait.js';

/**
 * `vm`, a Cloud Hypervisor's (API at `apiSocket`), whose unplugs ask vmm.ping first. An unanswered
 * ping fails the unplug with its own error, as a remove-device that timed out would: the NIC may still
 * be in the VM (the caller keeps the endpoint for del-iface). An error status is an answer, and so is
 * a reply that is not the API's (remove-device says what it finds), as for reachVmmUnderLocks; a VMM
 * gone at the ping fails it with that error, which UnplugIfRunning takes as the NIC gone with the VM.
 */
export class PingBeforeUnplug implements HotplugTarget {
  constructor(
    private readonly vm: HotplugTarget,
    private readonly apiSocket: string,
  ) {}

  hotplugNetworkDevice(device: NetworkDevice): Promise<{ pciPath?: string }> {
    return this.vm.hotplugNetworkDevice(device);
  }

  async unplugNetworkDevice(id: string): Promise<void> {
    try {
      await pingCloudHypervisor(this.apiSocket, { timeoutMs: CLOUD_HYPERVISOR_PING_UNDER_LOCK_MS });
    } catch (error) {
      if (cloudHypervisorPingFailure(error) !== 'answered') throw error;
    }
    await this.vm.unplugNetworkDevice(id);
  }
}

/** `vm` with a ping before each unplug when `hypervisor` is a Cloud Hypervisor's (PingBeforeUnplug). */
export function pingBeforeUnplugIfCloudHypervisor(
  vm: HotplugTarget,
  hypervisor: { kind: string; controlSocket?: string } | undefined,
): HotplugTarget {
  return hypervisor?.kind === 'clh' && hypervisor.controlSocket
    ? new PingBeforeUnplug(vm, hypervisor.controlSocket)
    : vm;
}
