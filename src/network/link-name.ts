/**
 * Names as the kernel sees them (netlink/link-name.ts), and vcnet's own devices, which are never
 * taken as new endpoints.
 */
import { InvalidInputError } from '../errors.js';
import { VCNET_LINK_GROUP } from './plan/plan-attach.js';

/** vcnet's own devices: the taps and ifbs it names `tap<N>_kata` / `ifb<N>_kata`, or anything in its link group. */
export function isVcnetDevice(link: { name: string; group?: number }): boolean {
  return /^(tap|ifb)\d+_kata$/.test(link.name) || link.group === VCNET_LINK_GROUP;
}

/** Refuses one of vcnet's own devices as a new endpoint (it would stack plumbing on plumbing). */
export function checkNotVcnetDevice(field: string, link: { name: string; group?: number }): void {
  if (isVcnetDevice(link)) {
    throw new InvalidInputError(
      field,
      link.name,
      'a pod interface, not one of the devices vcnet made for a VM (tap<N>_kata, ifb<N>_kata, or a link in its link group)',
      'name the pod interface (the veth, macvlan... CNI made), or use type "tap" to have vcnet make a new tap',
    );
  }
}
