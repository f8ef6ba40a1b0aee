/**
 * Network: the endpoints of one sandbox and their plumbing in its pod namespace.
 *
 *   const network = Network.open(config);
 *   await network.addEndpoints();            // scan, create, attach every interface
 *   generateGuestNetwork(network.endpoints()) // what the agent should set
 *   await network.removeEndpoints();         // exact detach
 */
import type { NetlinkHandle } from '../netlink/handle.js';
import { NetlinkHandle as Handle } from '../netlink/handle.js';
import { operationLogger } from '../observability/logger.js';
import { withSpan } from '../observability/tracing.js';
import {
  ConfigurationConflictError,
  type NetworkConfig,
  refuseHostNamespaceUnlessShared,
  validateNetworkConfig,
} from './config.js';
import { BridgedMacvlanEndpoint } from './endpoints/bridged-macvlan-endpoint.js';
import { createEndpoint } from './endpoints/create-endpoint.js';
import { type Endpoint, type EndpointState, EndpointStateError, type HotplugTarget } from './endpoints/endpoint.js';
import { IpvlanEndpoint } from './endpoints/ipvlan-endpoint.js';
import { MacvtapEndpoint } from './endpoints/macvtap-endpoint.js';
import { type PciDeviceInfo, PhysicalEndpoint } from './endpoints/physical-endpoint.js';
import { TapEndpoint } from './endpoints/tap-endpoint.js';
import { TuntapEndpoint } from './endpoints/tuntap-endpoint.js';
import { VethEndpoint } from './endpoints/veth-endpoint.js';
import { VhostUserEndpoint } from './endpoints/vhost-user-endpoint.js';
import type { AttachHooks, PlumbingContext } from './models/plumbing-context.js';
import type { EndpointType, NetworkInfo } from './network-info.js';
import { type UndoReport, undoPlumbing } from './plumbing.js';
import { interfacesOf, selectEndpointInterfaces, skippedNotice } from './scan.js';

export const NETWORK_STATE_VERSION = 1;

export interface NetworkState {
  version: typeof NETWORK_STATE_VERSION;
  config: NetworkConfig;
  endpoints: EndpointState[];
}

export interface AddEndpointsOptions {
  /** Interfaces to add; the namespace is scanned when omitted or empty. */
  interfaces?: NetworkInfo[];
  /** Plug the NICs into this running VM as they are attached. */
  hotplug?: HotplugTarget;
  keepFds?: boolean;
  hooks?: AttachHooks;
  /** Guest names by pod interface name (add-iface's `name`). */
  guestNames?: Record<string, string>;
  requestedType?: EndpointType;
  /** Lowest index (tap<index>_kata) for the new endpoints: callers that keep several networks in one namespace (a CNI chain per interface) keep their names apart. */
  firstIndex?: number;
  /** Called whenever the network's state changed or is about to (persist it to survive a crash). */
  journal?: (network: Network) => void;
}

export class Network {
  private readonly list: Endpoint[] = [];

  private constructor(
    readonly config: NetworkConfig,
    readonly handle: NetlinkHandle,
    readonly sandboxId: string,
  ) {}

  static open(config: NetworkConfig, sandboxId = 'sandbox'): Network {
    validateNetworkConfig(config);
    refuseHostNamespaceUnlessShared(config); // nodes (issue 12): never the host
    return new Network(config, Handle.open(config.namespacePath), sandboxId);
  }

  endpoints(): readonly Endpoint[] {
    return this.list;
  }

  private nextIndex(): number {
    return this.list.reduce((highest, endpoint) => Math.max(highest, endpoint.index + 1), 0);
  }

  /**
   * Creates and attaches endpoints. All or nothing: if one fails, the ones this call attached are
   * detached again before the error is thrown.
   */
  async addEndpoints(options: AddEndpointsOptions = {}): Promise<Endpoint[]> {
    return withSpan(
      'vcnet.attach',
      { 'vcnet.sandbox': this.sandboxId, 'vcnet.netns': this.config.namespacePath, 'vcnet.model': this.config.model },
      () => this.addEndpointsTraced(options),
    );
  }

  private async addEndpointsTraced(options: AddEndpointsOptions): Promise<Endpoint[]> {
    const log = operationLogger({
      sandbox: this.sandboxId,
      netns: this.config.namespacePath,
      operation: options.hotplug ? 'hot-attach' : 'attach',
    });
    const snapshot = await withSpan('vcnet.scan', { 'vcnet.netns': this.config.namespacePath }, () =>
      this.handle.snapshot(),
    );
    const known = new Set(this.list.map((endpoint) => endpoint.properties.link.name));
    let interfaces: NetworkInfo[];
    if (options.interfaces && options.interfaces.length > 0) {
      interfaces = options.interfaces;
    } else if (this.config.disableNewNetns) {
      // nodes (issue 12): Kata's disable_new_netns scans nothing; only hot-added taps come later.
      interfaces = [];
    } else {
      // nodes (issue 12): links without an address are skipped unless named (scan.ts).
      const scanned = interfacesOf(snapshot).filter((info) => !known.has(info.link.name) && !this.isOurs(info));
      const { selected, skipped } = selectEndpointInterfaces(scanned, new Set(this.config.namedInterfaces ?? []));
      for (const entry of skipped)
        log.warn({ endpoint: entry.info.link.name, reason: entry.reason }, skippedNotice(entry));
      interfaces = selected;
    }
    const context: PlumbingContext = {
      handle: this.handle,
      namespacePath: this.config.namespacePath,
      queues: this.config.queues,
      keepFds: options.keepFds ?? false,
      vhostNet: this.config.vhostNet,
      qdiscs: snapshot.qdiscs,
      ...(this.config.rateLimit ? { rateLimit: this.config.rateLimit } : {}),
      ...(options.hooks ? { hooks: options.hooks } : {}),
      ...(options.journal ? { journal: () => options.journal?.(this) } : {}),
    };
    const added: Endpoint[] = [];
    try {
      let index = Math.max(this.nextIndex(), options.firstIndex ?? 0);
      for (const info of interfaces) {
        const endpoint = createEndpoint(info, {
          index: index++,
          model: this.config.model,
          pairId: `${this.sandboxId}-${info.link.name}`,
          ...(options.guestNames?.[info.link.name] ? { guestName: options.guestNames[info.link.name] } : {}),
          ...(this.config.vhostUserStorePath ? { vhostUserStorePath: this.config.vhostUserStorePath } : {}),
          ...(options.requestedType ? { requestedType: options.requestedType } : {}),
        });
        // nodes (issue 12): with disable_new_netns the namespace is the host's: only new taps of vcnet's own.
        if (this.config.disableNewNetns && endpoint.type !== 'tap') {
          throw new ConfigurationConflictError(
            `with disable_new_netns only hot-added taps can be attached, not ${info.link.name} (${endpoint.type})`,
            info.link.name,
            'add the interface with type "tap" (add-iface), or give the sandbox its own namespace',
          );
        }
        // Listed before it is attached, so a journal written during the attach includes it.
        this.list.push(endpoint);
        const started = performance.now();
        try {
          await withSpan(
            options.hotplug ? 'vcnet.hot_attach' : 'vcnet.attach_endpoint',
            { 'vcnet.endpoint': info.link.name, 'vcnet.endpoint_type': endpoint.type },
            async () => {
              if (options.hotplug) await endpoint.hotAttach(context, options.hotplug);
              else await endpoint.attach(context);
            },
          );
        } catch (error) {
          this.list.splice(this.list.indexOf(endpoint), 1);
          log.warn({ endpoint: info.link.name, err: error }, 'attach failed; what it made was removed');
          throw error;
        }
        log.info(
          {
            endpoint: info.link.name,
            type: endpoint.type,
            tap: endpoint.plumbing?.tapName,
            durationMs: Number((performance.now() - started).toFixed(3)),
          },
          'endpoint attached',
        );
        added.push(endpoint);
        options.journal?.(this);
      }
    } catch (error) {
      await this.removeEndpoints(added, options.hotplug);
      options.journal?.(this);
      throw error;
    }
    return added;
  }

  /** A link vcnet itself made (a tap, macvtap or ifb of an attached endpoint) is not a pod interface. */
  private isOurs(info: NetworkInfo): boolean {
    return this.list.some((endpoint) =>
      endpoint.plumbing?.steps.some((step) => step.step === 'create-link' && step.name === info.link.name),
    );
  }

  /**
   * Detaches endpoints (all by default) and removes them from the network. The undo of every
   * endpoint goes in one batch, so deleting N taps waits for one RCU grace period, not N.
   */
  async removeEndpoints(endpoints: readonly Endpoint[] = [...this.list], hotplug?: HotplugTarget): Promise<UndoReport> {
    return withSpan(
      'vcnet.detach',
      {
        'vcnet.sandbox': this.sandboxId,
        'vcnet.netns': this.config.namespacePath,
        'vcnet.endpoints': endpoints.length,
      },
      () => this.removeEndpointsTraced(endpoints, hotplug),
    );
  }

  private async removeEndpointsTraced(
    endpoints: readonly Endpoint[],
    hotplug: HotplugTarget | undefined,
  ): Promise<UndoReport> {
    const log = operationLogger({ sandbox: this.sandboxId, netns: this.config.namespacePath, operation: 'detach' });
    if (hotplug) {
      for (const endpoint of endpoints) {
        if (endpoint.pciPath || endpoint.plumbing)
          await hotplug.unplugNetworkDevice(endpoint.deviceId).catch(() => undefined);
      }
    }
    const steps = endpoints.flatMap((endpoint) => endpoint.plumbing?.steps ?? []);
    for (const endpoint of endpoints) endpoint.closeFds();
    const report = await undoPlumbing(this.handle, steps);
    log.info(
      {
        endpoints: endpoints.map((endpoint) => endpoint.name),
        undone: report.undone,
        alreadyGone: report.alreadyGone,
        failures: report.failures.length,
      },
      'endpoints detached',
    );
    if (report.failures.length === 0) {
      for (const endpoint of endpoints) {
        // nodes (issue 12): a physical NIC goes back to its host driver (network/vfio.ts).
        if (endpoint instanceof PhysicalEndpoint) endpoint.releaseHostDevice();
        endpoint.markDetached();
        const position = this.list.indexOf(endpoint);
        if (position >= 0) this.list.splice(position, 1);
      }
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

  static load(state: NetworkState, sandboxId = 'sandbox'): Network {
    if (state.version !== NETWORK_STATE_VERSION) {
      throw new EndpointStateError(
        `network state version ${state.version} is not ${NETWORK_STATE_VERSION}`,
        state.version,
      );
    }
    refuseHostNamespaceUnlessShared(state.config); // nodes (issue 12): never the host
    const network = new Network(state.config, Handle.open(state.config.namespacePath), sandboxId);
    for (const endpointState of state.endpoints) network.list.push(endpointFromState(endpointState));
    return network;
  }

  close(): void {
    this.handle.close();
  }
}

export function endpointFromState(state: EndpointState): Endpoint {
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
      endpoint = new PhysicalEndpoint(index, properties, (state.details?.pci ?? { address: '' }) as PciDeviceInfo);
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
