/** The endpoint of an ipvlan pod link (type 'ipvlan'), always with the tcfilter model. */
import { PairedEndpoint } from './paired-endpoint.js';

/**
 * An ipvlan made by CNI's ipvlan plugin. ipvlan slaves share the parent's MAC, so a macvtap on top
 * cannot work: as Kata does, the pair is always created with the tcfilter model.
 */
export class IpvlanEndpoint extends PairedEndpoint {
  readonly type = 'ipvlan' as const;
}
