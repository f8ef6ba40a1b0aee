/**
 * Qdiscs: RTM_NEWQDISC / DELQDISC bodies and dumped qdiscs. ingress and clsact carry no options;
 * htb and prio have theirs in qdisc/.
 */
import { InvalidInputError } from '../../../errors.js';
import type { RawMessage } from '../reader.js';
import type { MessageWriter } from '../writer.js';
import { decodeTcHeader, INGRESS_HANDLE, TC_H_INGRESS, TcAttribute, writeTcMessage } from './message.js';
import { decodeHtbQdiscOptions, encodeHtbQdiscOptions, type HtbQdiscOptions } from './qdisc/htb.js';
import { decodePrioQdiscOptions, encodePrioQdiscOptions, type PrioQdiscOptions } from './qdisc/prio.js';

/** A qdisc's options by kind: ingress, clsact, htb, prio, or another kind kept by name only. */
export type QdiscOptions =
  | { kind: 'ingress' }
  | { kind: 'clsact' }
  | HtbQdiscOptions
  | PrioQdiscOptions
  | { kind: string; unparsed?: true };

/** A qdisc as the kernel reports it (`tc qdisc show`): link index, handle, parent, kind and options. */
export interface Qdisc {
  index: number;
  handle: number;
  parent: number;
  kind: string;
  options: QdiscOptions;
}

/**
 * A qdisc to add (`NetlinkHandle.addQdisc`): link index, handle, parent and options (which name its kind).
 */
export interface QdiscSpec {
  index: number;
  handle: number;
  parent: number;
  options: QdiscOptions;
}

/**
 * Writes the body of an RTM_NEWQDISC or RTM_DELQDISC request for `spec` (into a message begun on `writer`).
 */
export function encodeQdisc(writer: MessageWriter, spec: QdiscSpec): void {
  writeTcMessage(writer, spec.index, spec.handle, spec.parent, 0);
  writer.string(TcAttribute.KIND, spec.options.kind);
  const options = spec.options;
  if (options.kind === 'htb' && 'defaultClass' in options) encodeHtbQdiscOptions(writer, options);
  else if (options.kind === 'prio' && 'bands' in options) encodePrioQdiscOptions(writer, options);
  else if (options.kind !== 'ingress' && options.kind !== 'clsact')
    throw new InvalidInputError(
      'qdisc kind',
      options.kind,
      'ingress, clsact, htb (with defaultClass) or prio (with bands)',
    );
}

/** Deleting a qdisc needs only where it is: its link, handle and parent. */
export function encodeDeleteQdisc(writer: MessageWriter, index: number, handle: number, parent: number): void {
  writeTcMessage(writer, index, handle, parent, 0);
}

/** The ingress qdisc of link `index` (handle `ffff:`), which vcnet's redirect filters hang from. */
export function ingressQdisc(index: number): QdiscSpec {
  return { index, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, options: { kind: 'ingress' } };
}

/**
 * Decodes an RTM_NEWQDISC message (ingress, clsact, htb and prio options decoded). Throws
 * `MalformedMessageError` on a truncated message.
 */
export function decodeQdisc(message: RawMessage): Qdisc {
  const header = decodeTcHeader(message);
  let options: QdiscOptions | undefined;
  if (header.kind === 'ingress' || header.kind === 'clsact') options = { kind: header.kind };
  else if (header.kind === 'htb') options = decodeHtbQdiscOptions(header.attributes);
  else if (header.kind === 'prio') options = decodePrioQdiscOptions(header.attributes);
  return {
    index: header.index,
    handle: header.handle,
    parent: header.parent,
    kind: header.kind,
    options: options ?? { kind: header.kind, unparsed: true },
  };
}
