/** gact: the generic action, a fixed verdict (struct tc_gact, linux/tc_act/tc_gact.h). */
import type { Attributes } from '../../reader.js';
import type { MessageWriter } from '../../writer.js';

/** TCA_GACT_* attribute types of a gact action. */
export const GactAttribute = { TM: 1, PARMS: 2, PROB: 3 } as const;
const TC_GACT_LENGTH = 20;

/** A generic action (gact): its TC_ACT_* verdict, such as pass, drop or stolen. */
export interface TcGactAction {
  kind: 'gact';
  /** A TcActionResult. */
  result: number;
}

/** TCA_ACT_OPTIONS of a gact action. */
export function encodeGactOptions(writer: MessageWriter, action: TcGactAction): void {
  const parms = writer.struct(GactAttribute.PARMS, TC_GACT_LENGTH);
  parms.writeInt32LE(action.result, 8);
}

/** Reads a gact action's parameters; undefined when they are missing or short. */
export function decodeGactOptions(options: Attributes | undefined): TcGactAction | undefined {
  const parms = options?.raw(GactAttribute.PARMS);
  return parms && parms.length >= TC_GACT_LENGTH ? { kind: 'gact', result: parms.readInt32LE(8) } : undefined;
}
