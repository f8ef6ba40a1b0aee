/** The endpoint of a macvlan pod link (type 'macvlan'). */
import { PairedEndpoint } from './paired-endpoint.js';

/** A macvlan made by CNI's macvlan plugin; joined to the VM like a veth (Kata's BridgedMacvlanEndpoint). */
export class BridgedMacvlanEndpoint extends PairedEndpoint {
  readonly type = 'macvlan' as const;
}
