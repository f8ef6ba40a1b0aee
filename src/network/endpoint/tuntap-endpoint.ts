/** The endpoint of a tap pod link made by another program (type 'tuntap'). */
import { PairedEndpoint } from './paired-endpoint.js';

/** A tap device that something else created in the pod namespace (tap mode only), joined like a veth. */
export class TuntapEndpoint extends PairedEndpoint {
  readonly type = 'tuntap' as const;
}
