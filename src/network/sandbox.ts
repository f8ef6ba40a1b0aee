/**
 * A sandbox as the CLI and the CNI plugin handle it: an id, its pod namespace, its network, and
 * (later) its hypervisor and agent channel, persisted under the state directory.
 */
import { VcnetError } from '../errors.js';
import { type NetworkConfig, validateNetworkConfig } from './config.js';
import type { Endpoint, HotplugTarget } from './endpoints/endpoint.js';
import { type GuestNetwork, type GuestRoute, generateGuestNetwork } from './guest.js';
import { Network, type NetworkState } from './network.js';
import type { UndoReport } from './plumbing.js';
import { SandboxStore } from './state/store.js';

export const SANDBOX_STATE_VERSION = 1;

export interface HypervisorRecord {
  kind: 'qemu' | 'clh' | 'firecracker';
  controlSocket?: string;
}

export interface SandboxState {
  version: typeof SANDBOX_STATE_VERSION;
  id: string;
  createdAt: string;
  network: NetworkState;
  hypervisor?: HypervisorRecord;
  agentSocket?: string;
  /** Routes given with update-routes, which replace the ones derived from the namespace. */
  guestRoutes?: GuestRoute[];
}

export interface AttachResult {
  id: string;
  endpoints: Endpoint[];
  guest: GuestNetwork;
  statePath: string;
}

export class SandboxExistsError extends VcnetError {
  constructor(id: string, path: string) {
    super('VCNET_SANDBOX_EXISTS', `sandbox ${id} is already attached (state in ${path})`, {
      value: id,
      hint: `detach it first: vcnet detach --sandbox ${id}`,
    });
  }
}

/** Attaches every interface of the namespace and records the sandbox; nothing is left if it fails. */
export async function attachSandbox(
  id: string,
  config: NetworkConfig,
  options: { stateDirectory?: string; hypervisor?: HypervisorRecord; agentSocket?: string } = {},
): Promise<AttachResult> {
  validateNetworkConfig(config);
  const store = new SandboxStore(id, options.stateDirectory);
  return store.withLock(async () => {
    if (store.read()) throw new SandboxExistsError(id, store.statePath);
    const network = Network.open(config, id);
    try {
      // Record the intent first, so a crash in the middle leaves a state file for detach/gc to find.
      const createdAt = new Date().toISOString();
      const record = (): SandboxState => ({
        version: SANDBOX_STATE_VERSION,
        id,
        createdAt,
        network: network.save(),
        ...(options.hypervisor ? { hypervisor: options.hypervisor } : {}),
        ...(options.agentSocket ? { agentSocket: options.agentSocket } : {}),
      });
      store.write(record());
      try {
        await network.addEndpoints({
          // Every step is on disk before it is sent: a crash leaves nothing detach cannot find.
          journal: () => store.write(record()),
        });
      } catch (error) {
        // A refused undo leaves endpoints with what is left: their record stays for detach and gc.
        if (network.endpoints().length > 0) store.write(record());
        else store.remove();
        throw error;
      }
      store.write(record());
      return {
        id,
        endpoints: [...network.endpoints()],
        guest: generateGuestNetwork(network.endpoints()),
        statePath: store.statePath,
      };
    } finally {
      network.close();
    }
  });
}

export interface DetachResult {
  id: string;
  found: boolean;
  report?: UndoReport;
}

/** Undoes what attach recorded, from the state file alone. An unknown sandbox is not an error. */
export async function detachSandbox(
  id: string,
  options: {
    stateDirectory?: string;
    connectHotplug?: (state: SandboxState) => Promise<HotplugTarget | undefined>;
  } = {},
): Promise<DetachResult> {
  const store = new SandboxStore(id, options.stateDirectory);
  return store.withLock(async () => {
    const state = store.read<SandboxState>();
    if (!state) return { id, found: false };
    const network = Network.load(state.network, id);
    try {
      // A running VM gives its NICs back first (best effort: a dead VM holds nothing).
      const hotplug = await options.connectHotplug?.(state).catch(() => undefined);
      const report = await network.removeEndpoints(undefined, hotplug);
      if (report.failures.length > 0) {
        store.write({ ...state, network: network.save() });
        throw new VcnetError(
          'VCNET_DETACH_INCOMPLETE',
          `detach of ${id} left ${report.failures.length} change(s) undone: ${report.failures.map((f) => f.message).join('; ')}`,
          {
            value: id,
            hint: 'run detach again; what is already gone is skipped',
          },
        );
      }
      store.remove();
      return { id, found: true, report };
    } finally {
      network.close();
    }
  });
}

export function readSandbox(id: string, stateDirectory?: string): SandboxState | undefined {
  return new SandboxStore(id, stateDirectory).read<SandboxState>();
}
