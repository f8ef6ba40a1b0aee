/** matchall: every packet, then classify or run actions (linux/pkt_cls.h TCA_MATCHALL_*). */
import type { Attributes } from '../../reader.js';
import type { MessageWriter } from '../../writer.js';
import { decodeActions, encodeActions, type TcAction } from '../action.js';

/** TCA_MATCHALL_* attribute types of a matchall filter. */
export const MatchallAttribute = { CLASSID: 1, ACT: 2, FLAGS: 3, PCNT: 4 } as const;

/** A matchall filter's options: every packet, to a class or through its actions. */
export interface MatchallFilterOptions {
  kind: 'matchall';
  classId?: number;
  actions: TcAction[];
}

/** The attributes inside TCA_OPTIONS of a matchall filter. */
export function encodeMatchallOptions(writer: MessageWriter, options: MatchallFilterOptions): void {
  if (options.classId !== undefined) writer.u32(MatchallAttribute.CLASSID, options.classId);
  if (options.actions.length > 0) encodeActions(writer, MatchallAttribute.ACT, options.actions);
}

/** Reads a matchall filter's options (its class and actions). */
export function decodeMatchallOptions(options: Attributes): MatchallFilterOptions {
  const matchall: MatchallFilterOptions = {
    kind: 'matchall',
    actions: decodeActions(options.nested(MatchallAttribute.ACT)),
  };
  const classId = options.u32(MatchallAttribute.CLASSID);
  if (classId !== undefined) matchall.classId = classId;
  return matchall;
}
