/**
 * Filters: RTM_NEWTFILTER / DELTFILTER bodies and dumped filters. tcm_info holds the priority and
 * the protocol; the kind's own options (u32, matchall) are in filter/.
 */
import { InvalidInputError } from '../../../errors.js';
import type { RawMessage } from '../reader.js';
import type { MessageWriter } from '../writer.js';
import { decodeMatchallOptions, encodeMatchallOptions, type MatchallFilterOptions } from './filter/matchall.js';
import { decodeU32Options, encodeU32Options, type U32FilterOptions } from './filter/u32.js';
import { decodeTcHeader, TcAttribute, writeTcMessage } from './message.js';

/** Ethernet protocol numbers a filter matches (linux/if_ether.h). */
export const ETH_P_ALL = 0x0003;
/** EtherType of IPv4 (host order), as a filter's `protocol`. */
export const ETH_P_IP = 0x0800;
/** EtherType of IPv6 (host order), as a filter's `protocol`. */
export const ETH_P_IPV6 = 0x86dd;

/** A filter's classifier options: u32, matchall, or another kind kept by name only. */
export type FilterOptions = U32FilterOptions | MatchallFilterOptions | { kind: string; unparsed?: true };

/**
 * A tc filter as the kernel reports it (`tc filter show`): link index, parent, handle, priority, protocol,
 * chain and its classifier options.
 */
export interface Filter {
  index: number;
  parent: number;
  handle: number;
  priority: number;
  protocol: number;
  kind: string;
  chain?: number;
  options: FilterOptions;
}

/**
 * A tc filter to add (`NetlinkHandle.addFilter`): link index, parent (the qdisc or class), priority, protocol
 * and classifier options; handle 0 lets the kernel choose.
 */
export interface FilterSpec {
  index: number;
  parent: number;
  /** 0 lets the kernel choose (u32 gives 800::800). */
  handle?: number;
  priority: number;
  protocol?: number;
  options: FilterOptions;
}

/** A filter's tcm_info: the priority in the high half, the protocol in network order in the low half. */
function filterInfo(priority: number, protocol: number = ETH_P_ALL): number {
  return ((priority << 16) | (((protocol & 0xff) << 8) | ((protocol >> 8) & 0xff))) >>> 0;
}

/** Writes the body of an RTM_NEWTFILTER request for `spec` (into a message begun on `writer`). */
export function encodeFilter(writer: MessageWriter, spec: FilterSpec): void {
  writeTcMessage(writer, spec.index, spec.handle ?? 0, spec.parent, filterInfo(spec.priority, spec.protocol));
  writer.string(TcAttribute.KIND, spec.options.kind);
  const options = spec.options;
  writer.beginNested(TcAttribute.OPTIONS);
  if (options.kind === 'u32' && 'keys' in options) encodeU32Options(writer, options);
  else if (options.kind === 'matchall' && 'actions' in options) encodeMatchallOptions(writer, options);
  else throw new InvalidInputError('tc filter kind', options.kind, 'u32 (with keys) or matchall (with actions)');
  writer.endNested();
}

/**
 * Writes the body of an RTM_DELTFILTER request for the filter `target` names (by link, parent, priority, and
 * protocol, handle and kind when given).
 */
export function encodeDeleteFilter(
  writer: MessageWriter,
  target: { index: number; parent: number; priority: number; protocol?: number; handle?: number; kind?: string },
): void {
  writeTcMessage(writer, target.index, target.handle ?? 0, target.parent, filterInfo(target.priority, target.protocol));
  if (target.kind) writer.string(TcAttribute.KIND, target.kind);
}

/**
 * Decodes an RTM_NEWTFILTER message (u32 and matchall options decoded, other kinds by name). Throws
 * `MalformedMessageError` on a truncated message.
 */
export function decodeFilter(message: RawMessage): Filter {
  const header = decodeTcHeader(message);
  const protocolNetworkOrder = header.info & 0xffff;
  const filter: Filter = {
    index: header.index,
    parent: header.parent,
    handle: header.handle,
    priority: header.info >>> 16,
    protocol: ((protocolNetworkOrder & 0xff) << 8) | (protocolNetworkOrder >> 8),
    kind: header.kind,
    options: { kind: header.kind, unparsed: true },
  };
  const chain = header.attributes.u32(TcAttribute.CHAIN);
  if (chain !== undefined) filter.chain = chain;
  const options = header.attributes.nested(TcAttribute.OPTIONS);
  if (header.kind === 'u32' && options) filter.options = decodeU32Options(options);
  else if (header.kind === 'matchall' && options) filter.options = decodeMatchallOptions(options);
  return filter;
}
