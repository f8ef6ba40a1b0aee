/**
 * How a VM's NIC is joined to the pod's interface (Kata's NetInterworkingModel).
 *   tcfilter: a tap beside the interface, tc ingress + mirred redirect both ways (Kata's default);
 *   macvtap:  a macvtap link on top of the interface, the VM reads/writes /dev/tapN;
 *   none:     only a tap; the hypervisor lives in the host namespace (disable_new_netns).
 */
import { labelArgument } from '../arguments.js';
import { InvalidInputError } from '../errors.js';

export const INTERWORKING_MODELS = ['default', 'macvtap', 'tcfilter', 'none'] as const;
/**
 * How a pod link is joined to the VM: `tcfilter` (a tap and tc mirred redirects, the default), `macvtap`,
 * `none` (nothing on the host), or `default` (tcfilter).
 */
export type InterworkingModelName = (typeof INTERWORKING_MODELS)[number];
/** A model after `default` is resolved. */
export type InterworkingModel = Exclude<InterworkingModelName, 'default'>;

export const DEFAULT_INTERWORKING_MODEL: InterworkingModel = 'tcfilter';

/** A model by name, in any case and with blanks around it; anything else (a non-string too) is refused naming `field`. */
export function parseInterworkingModel(text: string, field = 'internetworking_model'): InterworkingModel {
  labelArgument(field, 'field', 'internetworking_model');
  const value = typeof text === 'string' ? text.trim().toLowerCase() : undefined;
  if (value === undefined || !(INTERWORKING_MODELS as readonly string[]).includes(value)) {
    throw new InvalidInputError(field, text, INTERWORKING_MODELS.join(', '));
  }
  return value === 'default' ? DEFAULT_INTERWORKING_MODEL : (value as InterworkingModel);
}

export function isValidInterworkingModel(value: unknown): value is InterworkingModelName {
  return typeof value === 'string' && (INTERWORKING_MODELS as readonly string[]).includes(value);
}
