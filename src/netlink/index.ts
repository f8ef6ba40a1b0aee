/**
 * The `vcnet/netlink` entry: the rtnetlink codec (pure: encoders and decoders for links, addresses,
 * routes, neighbours, qdiscs, classes, filters and actions, one file per tc kind under codec/tc/; the
 * message reader and writer; the kernel's constants, each beside its user), the handle that sends it,
 * and the netlink errors. `import … from 'vcnet'` has the handle too; this entry is for code that
 * builds or reads netlink messages itself.
 */

export { isMacAddress } from '../mac-address.js';
export * from './codec/address.js';
export * from './codec/address-format.js';
export * from './codec/constants.js';
export * from './codec/link/ipvlan.js';
export * from './codec/link/macvlan.js';
export * from './codec/link/message.js';
export * from './codec/link/tun.js';
export * from './codec/link/veth.js';
export * from './codec/link.js';
export * from './codec/neighbour.js';
export * from './codec/reader.js';
export * from './codec/route.js';
export * from './codec/route-attributes.js';
export * from './codec/tc/action/gact.js';
export * from './codec/tc/action/mirred.js';
export * from './codec/tc/action/result.js';
export * from './codec/tc/action.js';
export * from './codec/tc/filter/matchall.js';
export * from './codec/tc/filter/u32.js';
export * from './codec/tc/filter.js';
export * from './codec/tc/message.js';
export * from './codec/tc/qdisc/htb.js';
export * from './codec/tc/qdisc/prio.js';
export * from './codec/tc/qdisc.js';
export { MessageWriter } from './codec/writer.js';
export {
  DumpInterruptedError,
  DumpOverrunError,
  errnoName,
  LinkNotFoundError,
  NetlinkClosedError,
  NetlinkError,
} from './errors.js';
export {
  ChangeBatch,
  type DeleteFilterTarget,
  type NamespaceSnapshot,
  NetlinkHandle,
  type RouteFilter,
  type SnapshotOptions,
  type SnapshotPart,
} from './handle.js';
export type { RequestOutcome } from './protocol.js';
