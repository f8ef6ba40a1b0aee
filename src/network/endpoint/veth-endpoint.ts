/** The endpoint of a veth pod link (type 'virtual'), the common case. */
import { PairedEndpoint } from './paired-endpoint.js';

/** A veth made by CNI (bridge, ptp plugins): the common case. */
export class VethEndpoint extends PairedEndpoint {
  readonly type = 'virtual' as const;
}
