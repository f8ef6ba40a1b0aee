/**
 * Traffic control: qdiscs (ingress, clsact, htb, prio), htb classes, and u32 / matchall filters
 * carrying mirred and gact actions. All share tcmsg + TCA_* attributes.
 */
import {
  ActionAttribute,
  ETH_P_ALL,
  GactAttribute,
  HTB_PROTOCOL_VERSION,
  HtbAttribute,
  INGRESS_HANDLE,
  MatchallAttribute,
  MirredAction,
  MirredAttribute,
  TC_H_INGRESS,
  TC_U32_TERMINAL,
  TcActionResult,
  TcAttribute,
  U32Attribute,
} from './constants.js';
import { Attributes, MalformedMessageError, type RawMessage } from './reader.js';
import type { MessageWriter } from './writer.js';

export const TCMSG_LENGTH = 20;
const TC_HTB_GLOB_LENGTH = 20;
const TC_HTB_OPT_LENGTH = 44;
const TC_U32_SEL_LENGTH = 16;
const TC_U32_KEY_LENGTH = 16;
const TC_MIRRED_LENGTH = 28;
const TC_GACT_LENGTH = 20;
const TC_PRIO_QOPT_LENGTH = 20;
const TC_LINKLAYER_ETHERNET = 1;
/** psched ticks per microsecond on every kernel since 3.x (/proc/net/psched: 1000 / 64). */
const TICKS_PER_MICROSECOND = 1000 / 64;
const DEFAULT_BURST_MTU = 1600;

// ---- handles ----

/** "1:2" / "ffff:" / "root" / "ingress" <-> the kernel's 32-bit handles. */
export function parseHandle(text: string): number {
  if (text === 'root') return 0xffffffff;
  if (text === 'ingress') return TC_H_INGRESS;
  const match = /^([0-9a-fA-F]{1,4}):([0-9a-fA-F]{0,4})$/.exec(text);
  if (!match) throw new Error(`not a tc handle: "${text}" (expected major:minor in hex, e.g. 1:2 or ffff:)`);
  return ((Number.parseInt(match[1]!, 16) << 16) | (match[2] ? Number.parseInt(match[2], 16) : 0)) >>> 0;
}

export function formatHandle(handle: number): string {
  if (handle === 0xffffffff) return 'root';
  if (handle === TC_H_INGRESS) return 'ingress';
  const major = (handle >>> 16).toString(16);
  const minor = handle & 0xffff;
  return minor ? `${major}:${minor.toString(16)}` : `${major}:`;
}

// ---- types ----

export type QdiscOptions =
  | { kind: 'ingress' }
  | { kind: 'clsact' }
  | { kind: 'htb'; defaultClass: number; directQueueLength?: number }
  | { kind: 'prio'; bands: number; priorityMap: number[] }
  | { kind: string; unparsed?: true };

export interface Qdisc {
  index: number;
  handle: number;
  parent: number;
  kind: string;
  options: QdiscOptions;
}

export interface QdiscSpec {
  index: number;
  handle: number;
  parent: number;
  options: QdiscOptions;
}

export interface TrafficClass {
  index: number;
  handle: number;
  parent: number;
  kind: string;
  /** htb rate and ceil in bits per second. */
  rateBitsPerSecond?: number;
  ceilBitsPerSecond?: number;
}

export interface HtbClassSpec {
  index: number;
  handle: number;
  parent: number;
  rateBitsPerSecond: number;
  ceilBitsPerSecond?: number;
  /** Burst in bytes; default rate/1000 + 1600 as tc computes it. */
  burstBytes?: number;
  ceilBurstBytes?: number;
  priority?: number;
}

export type TcAction =
  | {
      kind: 'mirred';
      direction: 'egress' | 'ingress';
      mode: 'redirect' | 'mirror';
      targetIndex: number;
      result?: number;
    }
  | { kind: 'gact'; result: number }
  | { kind: string; unparsed?: true };

export interface U32Key {
  mask: number;
  value: number;
  offset: number;
  offsetMask: number;
}

export type FilterOptions =
  | { kind: 'u32'; keys: U32Key[]; classId?: number; actions: TcAction[]; terminal?: boolean }
  | { kind: 'matchall'; classId?: number; actions: TcAction[] }
  | { kind: string; unparsed?: true };

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

export interface FilterSpec {
  index: number;
  parent: number;
  /** 0 lets the kernel choose (u32 gives 800::800). */
  handle?: number;
  priority: number;
  protocol?: number;
  options: FilterOptions;
}

/** A match-everything u32 selector, as `u32 match u32 0 0`. */
export const MATCH_ALL_U32_KEYS: U32Key[] = [{ mask: 0, value: 0, offset: 0, offsetMask: 0 }];

// ---- encoding ----

function writeTcMessage(writer: MessageWriter, index: number, handle: number, parent: number, info: number): void {
  const header = writer.header(TCMSG_LENGTH);
  header.writeInt32LE(index, 4);
  header.writeUInt32LE(handle >>> 0, 8);
  header.writeUInt32LE(parent >>> 0, 12);
  header.writeUInt32LE(info >>> 0, 16);
}

export function encodeGetTc(writer: MessageWriter, index = 0, parent = 0): void {
  writeTcMessage(writer, index, 0, parent, 0);
}

export function encodeQdisc(writer: MessageWriter, spec: QdiscSpec): void {
  writeTcMessage(writer, spec.index, spec.handle, spec.parent, 0);
  writer.string(TcAttribute.KIND, spec.options.kind);
  const options = spec.options;
  if (options.kind === 'htb' && 'defaultClass' in options) {
    writer.beginNested(TcAttribute.OPTIONS);
    const glob = writer.struct(HtbAttribute.INIT, TC_HTB_GLOB_LENGTH);
    glob.writeUInt32LE(HTB_PROTOCOL_VERSION, 0);
    glob.writeUInt32LE(10, 4); // rate2quantum, tc's default
    glob.writeUInt32LE(options.defaultClass, 8);
    if (options.directQueueLength !== undefined) writer.u32(HtbAttribute.DIRECT_QLEN, options.directQueueLength);
    writer.endNested();
  } else if (options.kind === 'prio' && 'bands' in options) {
    const opt = writer.struct(TcAttribute.OPTIONS, TC_PRIO_QOPT_LENGTH);
    opt.writeInt32LE(options.bands, 0);
    for (let i = 0; i < 16; i++) opt.writeUInt8(options.priorityMap[i] ?? 0, 4 + i);
  }
}

/** Deleting a qdisc needs only where it is; the kind is checked when given. */
export function encodeDeleteQdisc(writer: MessageWriter, index: number, handle: number, parent: number): void {
  writeTcMessage(writer, index, handle, parent, 0);
}

export function ingressQdisc(index: number): QdiscSpec {
  return { index, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, options: { kind: 'ingress' } };
}

function microsecondsToTicks(microseconds: number): number {
  return Math.min(0xffffffff, Math.ceil(microseconds * TICKS_PER_MICROSECOND));
}

/** tc's "buffer": the time to send `burst` bytes at `rate`, in psched ticks. */
function transmitTicks(bytesPerSecond: number, burstBytes: number): number {
  return microsecondsToTicks((1_000_000 * burstBytes) / bytesPerSecond);
}

function writeRateSpec(view: Buffer, offset: number, bytesPerSecond: number): void {
  view.writeUInt8(0, offset); // cell_log: unused without a rate table
  view.writeUInt8(TC_LINKLAYER_ETHERNET, offset + 1);
  view.writeUInt32LE(Math.min(bytesPerSecond, 0xffffffff), offset + 8);
}

export function encodeHtbClass(writer: MessageWriter, spec: HtbClassSpec): void {
  if (!(spec.rateBitsPerSecond > 0)) throw new Error(`htb rate must be positive, got ${spec.rateBitsPerSecond}`);
  writeTcMessage(writer, spec.index, spec.handle, spec.parent, 0);
  writer.string(TcAttribute.KIND, 'htb');
  const rate = Math.floor(spec.rateBitsPerSecond / 8);
  const ceil = Math.floor((spec.ceilBitsPerSecond ?? spec.rateBitsPerSecond) / 8);
  const burst = spec.burstBytes ?? Math.floor(rate / 1000) + DEFAULT_BURST_MTU;
  const ceilBurst = spec.ceilBurstBytes ?? Math.floor(ceil / 1000) + DEFAULT_BURST_MTU;
  writer.beginNested(TcAttribute.OPTIONS);
  const opt = writer.struct(HtbAttribute.PARMS, TC_HTB_OPT_LENGTH);
  writeRateSpec(opt, 0, rate);
  writeRateSpec(opt, 12, ceil);
  opt.writeUInt32LE(transmitTicks(rate, burst), 24);
  opt.writeUInt32LE(transmitTicks(ceil, ceilBurst), 28);
  opt.writeUInt32LE(spec.priority ?? 0, 40);
  if (rate > 0xffffffff) writer.u64(HtbAttribute.RATE64, BigInt(rate));
  if (ceil > 0xffffffff) writer.u64(HtbAttribute.CEIL64, BigInt(ceil));
  writer.endNested();
}

function writeActions(writer: MessageWriter, attribute: number, actions: TcAction[]): void {
  writer.beginNested(attribute);
  actions.forEach((action, position) => {
    writer.beginNested(position + 1);
    writer.string(ActionAttribute.KIND, action.kind);
    writer.beginNested(ActionAttribute.OPTIONS);
    if (action.kind === 'mirred' && 'targetIndex' in action) {
      const parms = writer.struct(MirredAttribute.PARMS, TC_MIRRED_LENGTH);
      const redirect = action.mode === 'redirect';
      parms.writeInt32LE(action.result ?? (redirect ? TcActionResult.STOLEN : TcActionResult.PIPE), 8);
      const eaction =
        action.direction === 'egress'
          ? redirect
            ? MirredAction.EGRESS_REDIRECT
            : MirredAction.EGRESS_MIRROR
          : redirect
            ? MirredAction.INGRESS_REDIRECT
            : MirredAction.INGRESS_MIRROR;
      parms.writeInt32LE(eaction, 20);
      parms.writeUInt32LE(action.targetIndex, 24);
    } else if (action.kind === 'gact' && 'result' in action && action.result !== undefined) {
      const parms = writer.struct(GactAttribute.PARMS, TC_GACT_LENGTH);
      parms.writeInt32LE(action.result, 8);
    } else {
      throw new Error(`cannot encode tc action of kind "${action.kind}"`);
    }
    writer.endNested();
    writer.endNested();
  });
  writer.endNested();
}

/** A filter's tcm_info: the priority in the high half, the protocol in network order in the low half. */
function filterInfo(priority: number, protocol: number = ETH_P_ALL): number {
  return ((priority << 16) | (((protocol & 0xff) << 8) | ((protocol >> 8) & 0xff))) >>> 0;
}

export function encodeFilter(writer: MessageWriter, spec: FilterSpec): void {
  writeTcMessage(writer, spec.index, spec.handle ?? 0, spec.parent, filterInfo(spec.priority, spec.protocol));
  writer.string(TcAttribute.KIND, spec.options.kind);
  const options = spec.options;
  writer.beginNested(TcAttribute.OPTIONS);
  if (options.kind === 'u32' && 'keys' in options) {
    const keys = options.keys;
    const selector = writer.struct(U32Attribute.SEL, TC_U32_SEL_LENGTH + keys.length * TC_U32_KEY_LENGTH);
    const terminal = options.terminal ?? (options.actions.length > 0 || options.classId !== undefined);
    selector.writeUInt8(terminal ? TC_U32_TERMINAL : 0, 0);
    selector.writeUInt8(keys.length, 2);
    keys.forEach((key, i) => {
      const at = TC_U32_SEL_LENGTH + i * TC_U32_KEY_LENGTH;
      selector.writeUInt32BE(key.mask >>> 0, at);
      selector.writeUInt32BE(key.value >>> 0, at + 4);
      selector.writeInt32LE(key.offset, at + 8);
      selector.writeInt32LE(key.offsetMask, at + 12);
    });
    if (options.classId !== undefined) writer.u32(U32Attribute.CLASSID, options.classId);
    if (options.actions.length > 0) writeActions(writer, U32Attribute.ACT, options.actions);
  } else if (options.kind === 'matchall' && 'actions' in options) {
    if (options.classId !== undefined) writer.u32(MatchallAttribute.CLASSID, options.classId);
    if (options.actions.length > 0) writeActions(writer, MatchallAttribute.ACT, options.actions);
  } else {
    throw new Error(`cannot encode tc filter of kind "${options.kind}"`);
  }
  writer.endNested();
}

export function encodeDeleteFilter(
  writer: MessageWriter,
  target: { index: number; parent: number; priority: number; protocol?: number; handle?: number; kind?: string },
): void {
  writeTcMessage(writer, target.index, target.handle ?? 0, target.parent, filterInfo(target.priority, target.protocol));
  if (target.kind) writer.string(TcAttribute.KIND, target.kind);
}

// ---- decoding ----

interface TcHeader {
  index: number;
  handle: number;
  parent: number;
  info: number;
  attributes: Attributes;
  kind: string;
}

function decodeTcHeader(message: RawMessage): TcHeader {
  const payload = message.payload;
  if (payload.length < TCMSG_LENGTH) throw new MalformedMessageError(`tcmsg of ${payload.length} bytes`, 0);
  const attributes = new Attributes(payload, TCMSG_LENGTH);
  return {
    index: payload.readInt32LE(4),
    handle: payload.readUInt32LE(8),
    parent: payload.readUInt32LE(12),
    info: payload.readUInt32LE(16),
    attributes,
    kind: attributes.string(TcAttribute.KIND) ?? '',
  };
}

export function decodeQdisc(message: RawMessage): Qdisc {
  const header = decodeTcHeader(message);
  let options: QdiscOptions = { kind: header.kind, unparsed: true };
  if (header.kind === 'ingress' || header.kind === 'clsact') {
    options = { kind: header.kind };
  } else if (header.kind === 'htb') {
    const init = header.attributes.nested(TcAttribute.OPTIONS)?.raw(HtbAttribute.INIT);
    if (init && init.length >= TC_HTB_GLOB_LENGTH) options = { kind: 'htb', defaultClass: init.readUInt32LE(8) };
  } else if (header.kind === 'prio') {
    const opt = header.attributes.raw(TcAttribute.OPTIONS);
    if (opt && opt.length >= TC_PRIO_QOPT_LENGTH) {
      options = { kind: 'prio', bands: opt.readInt32LE(0), priorityMap: [...opt.subarray(4, 20)] };
    }
  }
  return { index: header.index, handle: header.handle, parent: header.parent, kind: header.kind, options };
}

export function decodeClass(message: RawMessage): TrafficClass {
  const header = decodeTcHeader(message);
  const decoded: TrafficClass = {
    index: header.index,
    handle: header.handle,
    parent: header.parent,
    kind: header.kind,
  };
  if (header.kind === 'htb') {
    const options = header.attributes.nested(TcAttribute.OPTIONS);
    const parms = options?.raw(HtbAttribute.PARMS);
    if (options && parms && parms.length >= TC_HTB_OPT_LENGTH) {
      const rate64 = options.u64(HtbAttribute.RATE64);
      const ceil64 = options.u64(HtbAttribute.CEIL64);
      decoded.rateBitsPerSecond = Number(rate64 ?? BigInt(parms.readUInt32LE(8))) * 8;
      decoded.ceilBitsPerSecond = Number(ceil64 ?? BigInt(parms.readUInt32LE(20))) * 8;
    }
  }
  return decoded;
}

function decodeActions(list: Attributes | undefined): TcAction[] {
  if (!list) return [];
  const actions: TcAction[] = [];
  for (const [, value] of list.all()) {
    const action = new Attributes(value);
    const kind = action.string(ActionAttribute.KIND) ?? '';
    const options = action.nested(ActionAttribute.OPTIONS);
    if (kind === 'mirred') {
      const parms = options?.raw(MirredAttribute.PARMS);
      if (parms && parms.length >= TC_MIRRED_LENGTH) {
        const eaction = parms.readInt32LE(20);
        actions.push({
          kind: 'mirred',
          direction:
            eaction === MirredAction.EGRESS_REDIRECT || eaction === MirredAction.EGRESS_MIRROR ? 'egress' : 'ingress',
          mode:
            eaction === MirredAction.EGRESS_REDIRECT || eaction === MirredAction.INGRESS_REDIRECT
              ? 'redirect'
              : 'mirror',
          targetIndex: parms.readUInt32LE(24),
          result: parms.readInt32LE(8),
        });
        continue;
      }
    } else if (kind === 'gact') {
      const parms = options?.raw(GactAttribute.PARMS);
      if (parms && parms.length >= TC_GACT_LENGTH) {
        actions.push({ kind: 'gact', result: parms.readInt32LE(8) });
        continue;
      }
    }
    actions.push({ kind, unparsed: true });
  }
  return actions;
}

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
  if (header.kind === 'u32' && options) {
    const selector = options.raw(U32Attribute.SEL);
    const keys: U32Key[] = [];
    let terminal = false;
    if (selector && selector.length >= TC_U32_SEL_LENGTH) {
      terminal = (selector.readUInt8(0) & TC_U32_TERMINAL) !== 0;
      const count = selector.readUInt8(2);
      for (let i = 0; i < count && TC_U32_SEL_LENGTH + (i + 1) * TC_U32_KEY_LENGTH <= selector.length; i++) {
        const at = TC_U32_SEL_LENGTH + i * TC_U32_KEY_LENGTH;
        keys.push({
          mask: selector.readUInt32BE(at),
          value: selector.readUInt32BE(at + 4),
          offset: selector.readInt32LE(at + 8),
          offsetMask: selector.readInt32LE(at + 12),
        });
      }
    }
    const u32: FilterOptions = {
      kind: 'u32',
      keys,
      actions: decodeActions(options.nested(U32Attribute.ACT)),
      terminal,
    };
    const classId = options.u32(U32Attribute.CLASSID);
    if (classId !== undefined) u32.classId = classId;
    filter.options = u32;
  } else if (header.kind === 'matchall' && options) {
    const matchall: FilterOptions = { kind: 'matchall', actions: decodeActions(options.nested(MatchallAttribute.ACT)) };
    const classId = options.u32(MatchallAttribute.CLASSID);
    if (classId !== undefined) matchall.classId = classId;
    filter.options = matchall;
  }
  return filter;
}
