/**
 * htb: the root qdisc Kata puts rate limits under (TCA_HTB_INIT, with a default class) and its
 * classes (TCA_HTB_PARMS: rate and ceil, with the bursts tc computes), from linux/pkt_sched.h.
 */
import { InvalidInputError } from '../../../../errors.js';
import type { Attributes, RawMessage } from '../../reader.js';
import type { MessageWriter } from '../../writer.js';
import { decodeTcHeader, TcAttribute, writeTcMessage } from '../message.js';

/** TCA_HTB_* attribute types of an htb qdisc or class. */
export const HtbAttribute = { PARMS: 1, INIT: 2, CTAB: 3, RTAB: 4, DIRECT_QLEN: 5, RATE64: 6, CEIL64: 7 } as const;
/** The htb protocol version vcnet writes in an htb qdisc's init (what tc writes). */
export const HTB_PROTOCOL_VERSION = 3;
const TC_HTB_GLOB_LENGTH = 20;
const TC_HTB_OPT_LENGTH = 44;
const TC_LINKLAYER_ETHERNET = 1;
/** psched ticks per microsecond on every kernel since 3.x (/proc/net/psched: 1000 / 64). */
const TICKS_PER_MICROSECOND = 1000 / 64;
const DEFAULT_BURST_MTU = 1600;

/**
 * An htb qdisc's options: the minor of the class unclassified traffic goes to, and the direct queue length
 * (packets).
 */
export interface HtbQdiscOptions {
  kind: 'htb';
  defaultClass: number;
  directQueueLength?: number;
}

/** A tc class as the kernel reports it (`tc class show`); htb classes carry their rate and ceil. */
export interface TrafficClass {
  index: number;
  handle: number;
  parent: number;
  kind: string;
  /** htb rate and ceil in bits per second. */
  rateBitsPerSecond?: number;
  ceilBitsPerSecond?: number;
}

/**
 * An htb class to add (`NetlinkHandle.addHtbClass`): rate and ceil in bits per second, bursts in bytes (tc's
 * defaults when left out).
 */
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

/** Writes an htb qdisc's options (TCA_HTB_INIT). */
export function encodeHtbQdiscOptions(writer: MessageWriter, options: HtbQdiscOptions): void {
  writer.beginNested(TcAttribute.OPTIONS);
  const glob = writer.struct(HtbAttribute.INIT, TC_HTB_GLOB_LENGTH);
  glob.writeUInt32LE(HTB_PROTOCOL_VERSION, 0);
  glob.writeUInt32LE(10, 4); // rate2quantum, tc's default
  glob.writeUInt32LE(options.defaultClass, 8);
  if (options.directQueueLength !== undefined) writer.u32(HtbAttribute.DIRECT_QLEN, options.directQueueLength);
  writer.endNested();
}

/** Reads an htb qdisc's options; undefined when its init is missing or short. */
export function decodeHtbQdiscOptions(attributes: Attributes): HtbQdiscOptions | undefined {
  const init = attributes.nested(TcAttribute.OPTIONS)?.raw(HtbAttribute.INIT);
  return init && init.length >= TC_HTB_GLOB_LENGTH ? { kind: 'htb', defaultClass: init.readUInt32LE(8) } : undefined;
}

function microsecondsToTicks(microseconds: number): number {
  return Math.min(0xffffffff, Math.ceil(microseconds * TICKS_PER_MICROSECOND));
}

/** The burst an htb class gets when none is given: a millisecond at its rate plus one MTU-sized frame. */
export function htbDefaultBurstBytes(bytesPerSecond: number): number {
  return Math.floor(bytesPerSecond / 1000) + DEFAULT_BURST_MTU;
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

/**
 * Writes the body of an RTM_NEWTCLASS request for an htb class (with the rate tables the kernel wants).
 * Throws an `InvalidInputError` for a rate that is not a positive number.
 */
export function encodeHtbClass(writer: MessageWriter, spec: HtbClassSpec): void {
  if (!(spec.rateBitsPerSecond > 0))
    throw new InvalidInputError(
      'htb class rateBitsPerSecond',
      spec.rateBitsPerSecond,
      'a number of bits per second above 0',
    );
  writeTcMessage(writer, spec.index, spec.handle, spec.parent, 0);
  writer.string(TcAttribute.KIND, 'htb');
  const rate = Math.floor(spec.rateBitsPerSecond / 8);
  const ceil = Math.floor((spec.ceilBitsPerSecond ?? spec.rateBitsPerSecond) / 8);
  const burst = spec.burstBytes ?? htbDefaultBurstBytes(rate);
  const ceilBurst = spec.ceilBurstBytes ?? htbDefaultBurstBytes(ceil);
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

/** A dumped class; rate and ceil are read for htb, the only classful qdisc vcnet makes. */
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
