/**
 * The `kata-runtime kata-network` operations on a recorded sandbox: add-iface, del-iface,
 * list-ifaces, update-routes, list-routes. On a sandbox with a running VM (QMP and agent sockets
 * recorded) they hot-plug through QMP and configure the guest through the agent; without one they
 * change the host plumbing and the record only. Every change runs under the sandbox lock, is validated
 * before anything changes, and is rolled back whole when a later step fails.
 */
import { AgentClient } from '../agent/client.js';
import type { Interface, Route } from '../agent/generated/types_pb.js';
import {
  interfaceFromJson,
  interfaceToJson,
  type KataInterfaceJson,
  type KataRouteJson,
  routesFromJson,
  routeToJson,
} from '../agent/kata-network-json.js';
import { interfaceUpdateOf, routeUpdatesOf } from '../agent/network-request.js';
import { InvalidInputError, VcnetError } from '../errors.js';
import { QmpClient } from '../hypervisor/qmp.js';
import { QemuNetworkHotplugTarget } from '../hypervisor/qmp-network-hotplug.js';
import { HardwareType } from '../netlink/codec/constants.js';
import { openRecordedNamespace } from '../netns/namespace-identity.js';
import type { Endpoint, HotplugTarget } from '../network/endpoints/endpoint.js';
import { type GuestInterface, type GuestRoute, generateGuestNetwork } from '../network/guest.js';
import { Network } from '../network/network.js';
import { ENDPOINT_TYPES, type EndpointType, type NetworkInfo } from '../network/network-info.js';
import { interfacesOf } from '../network/scan.js';
import { SandboxStore } from '../network/state/store.js';
import { attachRecorded, detachRecorded, type RecordKeeper, type SandboxState } from './service.js';

export class SandboxNotFoundError extends VcnetError {
  constructor(id: string, path: string) {
    super('VCNET_SANDBOX_NOT_FOUND', `sandbox ${id} is not attached (no state in ${path})`, {
      value: id,
      hint: `attach it first: vcnet attach --sandbox ${id} --netns PATH`,
    });
  }
}

/** The running VM of a sandbox, when its sockets are recorded and answer. */
export interface VirtualMachine {
  hotplug: HotplugTarget;
  agent: AgentClient;
  close(): Promise<void>;
}

export async function connectVirtualMachine(state: SandboxState): Promise<VirtualMachine | undefined> {
  const qmpPath = state.hypervisor?.kind === 'qemu' ? state.hypervisor.controlSocket : undefined;
  if (!qmpPath || !state.agentSocket) return undefined;
  const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
  try {
    const agent = await AgentClient.connect(state.agentSocket, { deadlineMs: 10_000 });
    return {
      hotplug: new QemuNetworkHotplugTarget(qmp, { timeoutMs: 20_000 }),
      agent,
      close: async () => {
        agent.close();
        await qmp.close();
      },
    };
  } catch (error) {
    await qmp.close();
    throw error;
  }
}

export interface OpenSandbox {
  store: SandboxStore;
  state: SandboxState;
  network: Network;
}

export async function withSandbox<T>(
  id: string,
  stateDirectory: string | undefined,
  work: (sandbox: OpenSandbox) => Promise<T>,
): Promise<T> {
  const store = new SandboxStore(id, stateDirectory);
  return store.withLock(async () => {
    const state = store.read<SandboxState>();
    if (!state) throw new SandboxNotFoundError(id, store.statePath);
    // Only the namespace the record names, through one fd (refused when the path now names another).
    const namespace = openRecordedNamespace(state.namespace, store.statePath);
    try {
      const network = Network.load(state.network, id, namespace.entryPath);
      try {
        return await work({ store, state, network });
      } finally {
        network.close();
      }
    } finally {
      namespace.close();
    }
  });
}

function readJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError(what, text.slice(0, 80), 'valid JSON', (error as Error).message);
  }
}

function guestInterfaceOf(endpoint: Endpoint): GuestInterface {
  const found = generateGuestNetwork([endpoint]).interfaces[0];
  if (!found) throw new Error(`no guest interface for ${endpoint.name}`);
  return found;
}

export interface AddInterfaceResult {
  interface: KataInterfaceJson;
  /** Set when `type` was missing and taken from the device in the namespace. */
  inferredType?: EndpointType;
  /** The pod namespace link the interface was made from. */
  podDevice: string;
  hotplugged: boolean;
}

/** add-iface: validates the Interface JSON, attaches the device, hot-plugs and configures it when a VM runs. */
export async function addInterface(
  id: string,
  text: string,
  options: { stateDirectory?: string } = {},
): Promise<AddInterfaceResult> {
  const json = readJson(text, 'interface');
  const message = interfaceFromJson(json, 'interface');
  if (!message.device)
    throw new InvalidInputError(
      'interface.device',
      message.device,
      'the name of the link in the pod namespace (or of the tap to create, with type "tap")',
    );
  // "veth" is what people write; Kata's endpoint type for it is "virtual".
  const requested = message.type === 'veth' ? 'virtual' : message.type;
  if (requested && !(ENDPOINT_TYPES as readonly string[]).includes(requested)) {
    throw new InvalidInputError(
      'interface.type',
      requested,
      ENDPOINT_TYPES.join(', '),
      'or leave type out to use the kind of the device in the namespace',
    );
  }
  return withSandbox(id, options.stateDirectory, async ({ store, state, network }) => {
    const existing = network.endpoints();
    const guestName = message.name || message.device;
    if (existing.some((endpoint) => endpoint.name === guestName)) {
      throw new InvalidInputError('interface.name', guestName, 'a name no other interface of the sandbox has');
    }
    if (existing.some((endpoint) => endpoint.properties.link.name === message.device)) {
      throw new InvalidInputError('interface.device', message.device, 'a device the sandbox does not use yet');
    }
    const snapshot = await network.scan();
    const scanned = interfacesOf(snapshot).find((info) => info.link.name === message.device);
    let info: NetworkInfo;
    let inferredType: EndpointType | undefined;
    if (requested === 'tap') {
      if (scanned)
        throw new InvalidInputError(
          'interface.device',
          message.device,
          'a name not in use: with type "tap" vcnet creates the tap itself',
        );
      info = {
        link: {
          index: 0,
          name: message.device,
          type: HardwareType.ETHER,
          flags: 0,
          mtu: Number(message.mtu) || 1500,
          operationalState: 'down',
          group: 0,
          ...(message.hwAddr ? { address: message.hwAddr.toLowerCase() } : {}),
        },
        addresses: [],
        routes: [],
        neighbours: [],
      };
    } else {
      if (!scanned) {
        throw new InvalidInputError(
          'interface.device',
          message.device,
          `a link in the pod namespace (${
            interfacesOf(snapshot)
              .map((entry) => entry.link.name)
              .join(', ') || 'none'
          })`,
          'create the link first (CNI), or use type "tap" to have vcnet create a tap',
        );
      }
      info = scanned;
    }
    // Requested addresses replace what the device has, for the guest.
    const update = interfaceUpdateOf(
      { ...message, hwAddr: message.hwAddr || info.link.address || '' } as Interface,
      'interface',
    );
    if (
      update.hardwareAddress &&
      info.link.address &&
      requested !== 'tap' &&
      update.hardwareAddress !== info.link.address
    ) {
      throw new InvalidInputError(
        'interface.hwAddr',
        message.hwAddr,
        `the MAC of ${message.device} (${info.link.address}), which the guest NIC must use`,
      );
    }
    if (existing.some((endpoint) => endpoint.hardwareAddress && endpoint.hardwareAddress === update.hardwareAddress)) {
      throw new InvalidInputError(
        'interface.hwAddr',
        update.hardwareAddress,
        'a MAC no other interface of the sandbox has',
      );
    }
    if (message.IPAddresses.length > 0) {
      info = {
        ...info,
        addresses: update.addresses.map((address) => ({
          index: info.link.index,
          family: address.version === 4 ? 2 : 10,
          address: address.address,
          prefixLength: address.prefixLength,
          scope: 0,
          flags: 0,
        })),
      };
    }
    if (update.mtu) info = { ...info, link: { ...info.link, mtu: update.mtu } };

    const vm = await connectVirtualMachine(state);
    const keeper = sandboxRecordKeeper(store, state, network);
    try {
      const [endpoint] = await attachRecorded(
        network,
        {
          interfaces: [info],
          snapshot,
          guestNames: { [message.device]: guestName },
          ...(requested ? { requestedType: requested as EndpointType } : {}),
          keepFds: vm !== undefined,
          ...(vm ? { hotplug: vm.hotplug } : {}),
        },
        keeper,
      );
      if (!endpoint) throw new Error('no endpoint was created');
      endpoint.closeFds();
      inferredType = requested ? undefined : endpoint.type;
      const guest = guestInterfaceOf(endpoint);
      if (vm) {
        try {
          await vm.agent.updateInterface(interfaceFromJson(guest), { timeoutMs: 60_000 });
        } catch (error) {
          await detachRecorded(network, `add-iface ${guestName} (undoing it)`, keeper, {
            endpoints: [endpoint],
            hotplug: vm.hotplug,
          });
          throw error;
        }
      }
      return {
        interface: interfaceToJson(interfaceFromJson(guest)),
        podDevice: message.device,
        ...(inferredType ? { inferredType } : {}),
        hotplugged: vm !== undefined,
      };
    } finally {
      await vm?.close();
    }
  });
}

/** The sandbox record as the network holds it now; a sandbox keeps its record with no endpoints too. */
export function sandboxRecordKeeper(store: SandboxStore, state: SandboxState, network: Network): RecordKeeper {
  const persist = () => store.write({ ...state, network: network.save() });
  return { persist, discard: persist, path: store.statePath };
}

/** del-iface: finds the interface by name (or device, or hwAddr), unplugs it and removes its plumbing. */
export async function removeInterface(
  id: string,
  text: string,
  options: { stateDirectory?: string } = {},
): Promise<KataInterfaceJson> {
  const message = interfaceFromJson(readJson(text, 'interface'), 'interface');
  if (!message.name && !message.device && !message.hwAddr) {
    throw new InvalidInputError(
      'interface.name',
      message.name,
      'the guest name, device or hwAddr of an interface of the sandbox',
    );
  }
  return withSandbox(id, options.stateDirectory, async ({ store, state, network }) => {
    const endpoint = network
      .endpoints()
      .find(
        (candidate) =>
          (message.name && candidate.name === message.name) ||
          (!message.name && message.device && candidate.properties.link.name === message.device) ||
          (!message.name && !message.device && candidate.hardwareAddress === message.hwAddr.toLowerCase()),
      );
    if (!endpoint) {
      throw new InvalidInputError(
        message.name ? 'interface.name' : message.device ? 'interface.device' : 'interface.hwAddr',
        message.name || message.device || message.hwAddr,
        `an interface of sandbox ${id}: ${
          network
            .endpoints()
            .map((candidate) => candidate.name)
            .join(', ') || 'none'
        }`,
      );
    }
    const removed = interfaceToJson(interfaceFromJson(guestInterfaceOf(endpoint)));
    const vm = await connectVirtualMachine(state);
    try {
      await detachRecorded(network, `del-iface ${endpoint.name}`, sandboxRecordKeeper(store, state, network), {
        endpoints: [endpoint],
        ...(vm ? { hotplug: vm.hotplug } : {}),
      });
      return removed;
    } finally {
      await vm?.close();
    }
  });
}

/** list-ifaces: what the guest has (from the agent) or will have (from the record). */
export async function listInterfaces(
  id: string,
  options: { stateDirectory?: string } = {},
): Promise<KataInterfaceJson[]> {
  return withSandbox(id, options.stateDirectory, async ({ state, network }) => {
    const vm = await connectVirtualMachine(state);
    try {
      if (vm) return (await vm.agent.listInterfaces({ timeoutMs: 30_000 })).map(interfaceToJson);
      return generateGuestNetwork(network.endpoints()).interfaces.map((guest) =>
        interfaceToJson(interfaceFromJson(guest)),
      );
    } finally {
      await vm?.close();
    }
  });
}

/** update-routes: replaces the guest's routes on the devices named, through the agent and in the record. */
export async function updateRoutes(
  id: string,
  text: string,
  options: { stateDirectory?: string } = {},
): Promise<KataRouteJson[]> {
  const json = readJson(text, 'routes');
  const routes = routesFromJson(
    Array.isArray(json) ? json : ((json as { Routes?: unknown })?.Routes ?? json),
    'routes',
  );
  routeUpdatesOf(routes, 'routes');
  return withSandbox(id, options.stateDirectory, async ({ store, state, network }) => {
    const devices = new Set(network.endpoints().map((endpoint) => endpoint.name));
    routes.forEach((route, index) => {
      if (!devices.has(route.device)) {
        throw new InvalidInputError(
          `routes[${index}].device`,
          route.device,
          `an interface of sandbox ${id}: ${[...devices].join(', ') || 'none'}`,
        );
      }
    });
    const vm = await connectVirtualMachine(state);
    try {
      const applied: Route[] = vm ? await vm.agent.updateRoutes(routes, { timeoutMs: 30_000 }) : routes;
      const recorded = applied.map(routeToJson) as GuestRoute[];
      store.write({ ...state, guestRoutes: recorded });
      return recorded;
    } finally {
      await vm?.close();
    }
  });
}

/** list-routes: the guest's routes (agent), the recorded override, or what attach derived. */
export async function listRoutes(id: string, options: { stateDirectory?: string } = {}): Promise<KataRouteJson[]> {
  return withSandbox(id, options.stateDirectory, async ({ state, network }) => {
    const vm = await connectVirtualMachine(state);
    try {
      if (vm) return (await vm.agent.listRoutes({ timeoutMs: 30_000 })).map(routeToJson);
      return (state.guestRoutes ?? generateGuestNetwork(network.endpoints()).routes).map((route) =>
        routeToJson(routesFromJson([route])[0]!),
      );
    } finally {
      await vm?.close();
    }
  });
}
