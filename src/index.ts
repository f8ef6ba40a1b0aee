/** vcnet's library entry: `import { NetlinkHandle } from 'vcnet'`. */

export { AgentClient } from './agent/client.js';
export * from './agent/kata-network-json.js';
export { InvalidInputError, SystemCallError, VcnetError } from './errors.js';
// Hypervisors and the guest agent.
export * from './hypervisor/index.js';
export type { Address, AddressSpec } from './netlink/codec/address.js';
export * from './netlink/codec/addresses.js';
export * from './netlink/codec/constants.js';
export type { Link, LinkChanges, LinkKindData, LinkSpec, TunInfo } from './netlink/codec/link.js';
export type { Neighbour, NeighbourSpec } from './netlink/codec/neighbour.js';
export type { Route, RouteSpec } from './netlink/codec/route.js';
export * from './netlink/codec/traffic-control.js';
export { NetlinkError } from './netlink/errors.js';
export { ChangeBatch, LinkNotFoundError, NetlinkHandle } from './netlink/handle.js';
export * from './netns/namespace.js';
// The sandbox network: endpoints, models, guest structures.
export type { NetworkConfig } from './network/config.js';
export { parseKataConfiguration, readKataConfiguration, validateNetworkConfig } from './network/config.js';
export { classifyInterface, createEndpoint } from './network/endpoints/create-endpoint.js';
export { Endpoint, type HotplugTarget, type VmNetworkDevice } from './network/endpoints/endpoint.js';
export { collectGarbage } from './network/garbage-collector.js';
export * from './network/guest.js';
export { type InterworkingModel, parseInterworkingModel } from './network/interworking-model.js';
export { randomPrivateMacAddress } from './network/mac-address.js';
export { Network, type NetworkState } from './network/network.js';
export type { DnsInfo, EndpointType, NetworkInfo } from './network/network-info.js';
export { scanNamespace } from './network/scan.js';
export {
  addInterface,
  listInterfaces,
  listRoutes,
  removeInterface,
  updateRoutes,
} from './sandbox/sandbox-interfaces.js';
export { attachSandbox, detachSandbox, planSandboxAttach, readSandbox, type SandboxState } from './sandbox/service.js';
