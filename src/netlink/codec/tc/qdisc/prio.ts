/** prio: bands and the priority map (struct tc_prio_qopt), read when another tool made one. */
import type { Attributes } from '../../reader.js';
import type { MessageWriter } from '../../writer.js';
import { TcAttribute } from '../message.js';

const TC_PRIO_QOPT_LENGTH = 20;

/** A prio qdisc's options: its number of bands and the map of the 16 packet priorities to bands. */
export interface PrioQdiscOptions {
  kind: 'prio';
  bands: number;
  priorityMap: number[];
}

/** Writes a prio qdisc's options (bands and priority map). */
export function encodePrioQdiscOptions(writer: MessageWriter, options: PrioQdiscOptions): void {
  const opt = writer.struct(TcAttribute.OPTIONS, TC_PRIO_QOPT_LENGTH);
  opt.writeInt32LE(options.bands, 0);
  for (let i = 0; i < 16; i++) opt.writeUInt8(options.priorityMap[i] ?? 0, 4 + i);
}

/** Reads a prio qdisc's options; undefined when missing or short. */
export function decodePrioQdiscOptions(attributes: Attributes): PrioQdiscOptions | undefined {
  const opt = attributes.raw(TcAttribute.OPTIONS);
  if (!opt || opt.length < TC_PRIO_QOPT_LENGTH) return undefined;
  return { kind: 'prio', bands: opt.readInt32LE(0), priorityMap: [...opt.subarray(4, 20)] };
}
