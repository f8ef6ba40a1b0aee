/** vcnet's library entry: `import { NetlinkHandle } from 'vcnet'`. */
export { InvalidInputError, SystemCallError, VcnetError } from './errors.js';
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
