/**
 * `vcnet watch`: keeps a sandbox's VM in step with its pod namespace. A new interface is attached
 * (and hot-plugged and configured when the VM runs), a deleted one is unplugged and its plumbing
 * removed, and address, route and MTU changes are pushed to the guest agent (route MTU included).
 * Each change set is applied under the sandbox lock and recorded, like the kata-network commands.
 */
import { channels, publish } from '../diagnostics.js';
import { openRecordedNamespace } from '../netns/namespace-identity.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type NamespaceChange, NamespaceWatcher } from '../network/namespace-watcher.js';
import type { NetworkInfo } from '../network/network-info.js';
import { linksToAttach } from '../network/scan.js';
import { SandboxStore } from '../network/state/store.js';
import { pushEndpoints } from './guest-push.js';
import { refuseRunningFirecracker } from './hypervisor-connection.js';
import { connectVirtualMachine, SandboxNotFoundError, sandboxRecordKeeper, withSandbox } from './sandbox-interfaces.js';
import type { SandboxState } from './service.js';
import { attachRecorded, detachRecorded } from './service.js';

export interface WatchSummary {
  added: string[];
  removed: string[];
  updated: string[];
}

export interface SandboxWatchOptions {
  stateDirectory?: string;
  debounceMs?: number;
  onApplied?: (summary: WatchSummary) => void;
  onError?: (error: Error) => void;
}

/** Applies one change set to the sandbox (exported for tests and for one-shot use). */
export async function applyNamespaceChange(
  id: string,
  change: NamespaceChange,
  stateDirectory?: string,
): Promise<WatchSummary> {
  return withSandbox(id, stateDirectory, async ({ store, state, network }) => {
    const summary: WatchSummary = { added: [], removed: [], updated: [] };
    const vm = await connectVirtualMachine(state);
    try {
      const byLink = (name: string) => network.endpoints().find((endpoint) => endpoint.properties.link.name === name);
      const keeper = sandboxRecordKeeper(store, state, network);
      const toPush: Endpoint[] = [];
      const gone = change.removedInterfaces.map(byLink).filter((endpoint) => endpoint !== undefined);
      if (gone.length > 0) {
        await detachRecorded(network, `removing ${gone.map((endpoint) => endpoint.name).join(', ')}`, keeper, {
          endpoints: gone,
          ...(vm ? { hotplug: vm.hotplug } : {}),
        });
        summary.removed.push(...gone.map((endpoint) => endpoint.name));
      }
      // nodes (issue 12): address-less links wait until they get one (network/scan.ts linksToAttach).
      const { selected: fresh } = linksToAttach(
        change,
        (name) => byLink(name) !== undefined,
        new Set(state.network.config.namedInterfaces ?? []),
      );
      if (fresh.length > 0) {
        const added = await attachRecorded(
          network,
          { interfaces: fresh, keepFds: vm !== undefined, ...(vm ? { hotplug: vm.hotplug } : {}) },
          keeper,
        );
        for (const endpoint of added) endpoint.closeFds();
        toPush.push(...added);
        summary.added.push(...added.map((endpoint) => endpoint.name));
      }
      for (const info of change.changedInterfaces) {
        const endpoint = byLink(info.link.name);
        if (!endpoint || summary.added.includes(endpoint.name)) continue;
        endpoint.updateProperties(mergeChange(endpoint.properties, info));
        toPush.push(endpoint);
        summary.updated.push(endpoint.name);
      }
      // One push for the whole change set: the interfaces, then the sandbox's full route set once.
      if (vm && toPush.length > 0)
        await pushEndpoints(vm.agent, toPush, network.endpoints(), state.guestRoutes, {
          timeoutMs: 60_000,
          sandbox: id,
        });
      keeper.persist();
      publish(channels.watch, () => ({ sandbox: id, ...summary }));
      return summary;
    } finally {
      await vm?.close();
    }
  });
}

/**
 * The pod interface's new view, but its MAC as attach saw it: the macvtap model moves the pod
 * interface to a private MAC, and the guest keeps the original.
 */
function mergeChange(previous: NetworkInfo, next: NetworkInfo): NetworkInfo {
  return { ...next, link: { ...next.link, ...(previous.link.address ? { address: previous.link.address } : {}) } };
}

/** Watches the sandbox's namespace until `stop()`; change sets are applied one after another. */
export async function watchSandbox(
  id: string,
  options: SandboxWatchOptions = {},
): Promise<{ stop: () => Promise<void> }> {
  const store = new SandboxStore(id, options.stateDirectory);
  const state = store.read<SandboxState>();
  if (!state) throw new SandboxNotFoundError(id, store.statePath);
  refuseRunningFirecracker(state);
  // The recorded namespace by identity, as every other command: a path that now names another
  // namespace (a reused PID) is refused, and the watcher works through this fd, not the path.
  const namespace = openRecordedNamespace(state.namespace, store.statePath);
  let watcher: NamespaceWatcher;
  try {
    watcher = await NamespaceWatcher.start(namespace.entryPath, {
      ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
      onChange: async (change) => {
        try {
          options.onApplied?.(await applyNamespaceChange(id, change, options.stateDirectory));
        } catch (error) {
          options.onError?.(error as Error);
        }
      },
      ...(options.onError ? { onError: options.onError } : {}),
    });
  } catch (error) {
    namespace.close();
    throw error;
  }
  return {
    stop: async () => {
      try {
        await watcher.stop();
      } finally {
        namespace.close();
      }
    },
  };
}
