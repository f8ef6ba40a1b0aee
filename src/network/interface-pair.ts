/**
 * The two sides Kata calls a NetworkInterfacePair: the tap (or macvtap) the hypervisor uses, and the
 * pod's own interface it is joined to. Names follow Kata: `tap<idx>_kata` and `eth<idx>` for the guest
 * unless the pod interface has a name.
 */

import { randomPrivateMacAddress } from '../mac-address.js';
import type { InterworkingModel } from './interworking-model.js';
import { ifbName } from './plan/plan-attach.js';

/** The tap (or macvtap) side of an endpoint: its name and the MAC the guest NIC gets. */
export interface TapInterface {
  name: string;
  /** The MAC the guest NIC gets. */
  guestHardwareAddress: string;
}

/** The pod side of an endpoint: the link's name and MAC. */
export interface VirtualInterface {
  name: string;
  hardwareAddress: string;
}

/** An endpoint's two sides: the pod link and the tap the VM uses, with the guest-facing name. */
export interface NetworkInterfacePair {
  id: string;
  /** Guest-facing name. */
  name: string;
  tap: TapInterface;
  virtualInterface: VirtualInterface;
  model: InterworkingModel;
  /** A random private MAC kept for models that must move the pod interface off its own MAC (macvtap). */
  spareHardwareAddress: string;
}

export function tapName(index: number): string {
  return `tap${index}_kata`;
}

/**
 * The lowest device index from `from` on whose names (tap<N>_kata, ifb<N>_kata) no link in the
 * namespace has and that `taken` does not hold: where a namespace is shared (the host's under
 * disable_new_netns, a pod's that several CNI chains attach), each user's devices get names of their own.
 */
export function freeDeviceIndex(
  linkNames: ReadonlySet<string>,
  options: { from?: number; taken?: ReadonlySet<number> } = {},
): number {
  for (let index = options.from ?? 0; ; index++) {
    if (options.taken?.has(index)) continue;
    const tap = tapName(index);
    if (linkNames.has(tap) || linkNames.has(ifbName(tap))) continue;
    return index;
  }
}

export function createInterfacePair(
  index: number,
  interfaceName: string | undefined,
  podInterface: { name: string; hardwareAddress: string },
  model: InterworkingModel,
  id: string,
): NetworkInterfacePair {
  return {
    id,
    name: interfaceName && interfaceName.length > 0 ? interfaceName : `eth${index}`,
    tap: { name: tapName(index), guestHardwareAddress: podInterface.hardwareAddress },
    virtualInterface: { name: podInterface.name, hardwareAddress: podInterface.hardwareAddress },
    model,
    spareHardwareAddress: randomPrivateMacAddress(),
  };
}
