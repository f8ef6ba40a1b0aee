/**
 * How a VM's NIC is joined to the pod's interface (Kata's NetInterworkingModel).
 *   tcfilter: a tap beside the interface, tc ingress + mirred redirect both ways (Kata's default);
 *   macvtap:  a macvtap link on top of the interface, the VM reads/writes /dev/tapN;
 *   none:     only a tap; the hypervisor lives in the host namespace (disable_new_netns).
 */
import { InvalidInputError } from '../errors.js';

export const INTERWORKING_MODELS = ['default', 'macvtap', 'tcfilter', 'none'] as const;
export type InterworkingModelName = (typeof INTERWORKING_MODELS)[number];
/** A model after `default` is resolved. */
export type InterworkingModel = Exclude<InterworkingModelName, 'default'>;

export const DEFAULT_INTERWORKING_MODEL: InterworkingModel = 'tcfilter';

export function parseInterworkingModel(text: string, field = 'internetworking_model'): InterworkingModel {
  const value = text.trim().toLowerCase();
  if (!(INTERWORKING_MODELS as readonly string[]).includes(value)) {
    throw new InvalidInputError(field, text, INTERWORKING_MODELS.join(', '));
  }
  return value === 'default' ? DEFAULT_INTERWORKING_MODEL : (value as InterworkingModel);
}

export function isValidInterworkingModel(value: unknown): value is InterworkingModelName {
  return typeof value === 'string' && (INTERWORKING_MODELS as readonly string[]).includes(value);
}
