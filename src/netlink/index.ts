/**
 * The `vcnet/netlink` entry: the rtnetlink codec (pure: encoders and decoders for links, addresses,
 * routes, neighbours, qdiscs, classes and filters; the message reader and writer; the kernel's
 * constants), the handle that sends it, and the netlink errors. `import … from 'vcnet'` has the
 * handle too; this entry is for code that builds or reads netlink messages itself.
 */
export * from './codec/address.js';
export * from './codec/addresses.js';
export * from './codec/constants.js';
export * from './codec/link.js';
export * from './codec/neighbour.js';
export * from './codec/reader.js';
export * from './codec/route.js';
export * from './codec/traffic-control.js';
export { MessageWriter } from './codec/writer.js';
export { errnoName, NetlinkError } from './errors.js';
export {
  ChangeBatch,
  type DeleteFilterTarget,
  LinkNotFoundError,
  type NamespaceSnapshot,
  NetlinkHandle,
  type RouteFilter,
} from './handle.js';
