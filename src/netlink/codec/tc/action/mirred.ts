/** mirred: redirect or mirror a frame to another link (struct tc_mirred, linux/tc_act/tc_mirred.h). */
import type { Attributes } from '../../reader.js';
import type { MessageWriter } from '../../writer.js';
import { TcActionResult } from './result.js';

/** TCA_MIRRED_* attribute types of a mirred action. */
export const MirredAttribute = { TM: 1, PARMS: 2 } as const;
/** TCA_*_REDIRECT / _MIRROR: tc_mirred.eaction. */
export const MirredAction = { EGRESS_REDIRECT: 1, EGRESS_MIRROR: 2, INGRESS_REDIRECT: 3, INGRESS_MIRROR: 4 } as const;
const TC_MIRRED_LENGTH = 28;

/**
 * A mirred action: redirect or mirror each packet to the link `targetIndex`, on its egress or ingress.
 * vcnet's tcfilter model redirects between the pod link and the tap with it.
 */
export interface TcMirredAction {
  kind: 'mirred';
  direction: 'egress' | 'ingress';
  mode: 'redirect' | 'mirror';
  targetIndex: number;
  /** Defaults as tc's: STOLEN for a redirect, PIPE for a mirror. */
  result?: number;
}

/** TCA_ACT_OPTIONS of a mirred action. */
export function encodeMirredOptions(writer: MessageWriter, action: TcMirredAction): void {
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
}

/** Reads a mirred action's parameters; undefined when they are missing or short. */
export function decodeMirredOptions(options: Attributes | undefined): TcMirredAction | undefined {
  const parms = options?.raw(MirredAttribute.PARMS);
  if (!parms || parms.length < TC_MIRRED_LENGTH) return undefined;
  const eaction = parms.readInt32LE(20);
  return {
    kind: 'mirred',
    direction:
      eaction === MirredAction.EGRESS_REDIRECT || eaction === MirredAction.EGRESS_MIRROR ? 'egress' : 'ingress',
    mode: eaction === MirredAction.EGRESS_REDIRECT || eaction === MirredAction.INGRESS_REDIRECT ? 'redirect' : 'mirror',
    targetIndex: parms.readUInt32LE(24),
    result: parms.readInt32LE(8),
  };
}
