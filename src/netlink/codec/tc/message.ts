/**
 * What every traffic-control message shares: the tcmsg header, the TCA_* attributes around the kind's
 * own options, and the 32-bit handles tc writes as "major:minor".
 */
import { InvalidInputError } from '../../../errors.js';
import { Attributes, MalformedMessageError, type RawMessage } from '../reader.js';
import type { MessageWriter } from '../writer.js';

/** Size in bytes of struct tcmsg, the header of tc messages. */
export const TCMSG_LENGTH = 20;

/** TCA_*: the attributes of every qdisc, class and filter message. */
export const TcAttribute = { KIND: 1, OPTIONS: 2, STATS: 3, XSTATS: 4, RATE: 5, STATS2: 7, CHAIN: 11 } as const;
/** The parent handle of a link's root qdisc. */
export const TC_H_ROOT = 0xffffffff;
/** The parent handle of a link's ingress (or clsact) qdisc. */
export const TC_H_INGRESS = 0xfffffff1;
/** The handle tc gives an ingress qdisc ("ffff:"), and the parent of the filters under it. */
export const INGRESS_HANDLE = 0xffff0000;
/** A clsact qdisc's ingress hook, the parent of its ingress filters (TC_H_CLSACT:TC_H_MIN_INGRESS, "ffff:fff2"). */
export const CLSACT_INGRESS_PARENT = 0xfffffff2;

/** "1:2" / "ffff:" / "root" / "ingress" <-> the kernel's 32-bit handles. */
export function parseHandle(text: string): number {
  if (text === 'root') return TC_H_ROOT;
  if (text === 'ingress') return TC_H_INGRESS;
  const match = /^([0-9a-fA-F]{1,4}):([0-9a-fA-F]{0,4})$/.exec(text);
  if (!match) throw new InvalidInputError('tc handle', text, 'major:minor in hex (1:2, ffff:), root or ingress');
  return ((Number.parseInt(match[1]!, 16) << 16) | (match[2] ? Number.parseInt(match[2], 16) : 0)) >>> 0;
}

/** A tc handle's major number, the qdisc it names (the kernel's TC_H_MAJ, shifted down): 1 of 1:2. */
export function tcMajor(handle: number): number {
  return handle >>> 16;
}

/** A tc handle's minor number, the class under its qdisc (the kernel's TC_H_MIN): 2 of 1:2. */
export function tcMinor(handle: number): number {
  return handle & 0xffff;
}

/** A tc handle as `tc` prints it: `root`, `ingress`, `ffff:` or `1:10` (major:minor in hex). */
export function formatHandle(handle: number): string {
  if (handle === TC_H_ROOT) return 'root';
  if (handle === TC_H_INGRESS) return 'ingress';
  const major = tcMajor(handle).toString(16);
  const minor = tcMinor(handle);
  return minor ? `${major}:${minor.toString(16)}` : `${major}:`;
}

/** Writes the struct tcmsg header of a qdisc, class or filter request (into a message begun on `writer`). */
export function writeTcMessage(
  writer: MessageWriter,
  index: number,
  handle: number,
  parent: number,
  info: number,
): void {
  const header = writer.header(TCMSG_LENGTH);
  header.writeInt32LE(index, 4);
  header.writeUInt32LE(handle >>> 0, 8);
  header.writeUInt32LE(parent >>> 0, 12);
  header.writeUInt32LE(info >>> 0, 16);
}

/** The body of a qdisc, class or filter dump request (optionally for one link and parent). */
export function encodeGetTc(writer: MessageWriter, index = 0, parent = 0): void {
  writeTcMessage(writer, index, 0, parent, 0);
}

/** The struct tcmsg header of a qdisc, class or filter message, with its kind and its attributes. */
export interface TcHeader {
  index: number;
  handle: number;
  parent: number;
  info: number;
  attributes: Attributes;
  kind: string;
}

/**
 * Decodes the tcmsg header and kind of a qdisc, class or filter message. Throws `MalformedMessageError` on a
 * truncated message.
 */
export function decodeTcHeader(message: RawMessage): TcHeader {
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
