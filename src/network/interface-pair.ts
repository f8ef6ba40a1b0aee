/**
 * The two sides Kata calls a NetworkInterfacePair: the tap (or macvtap) the hypervisor uses, and the
 * pod's own interface it is joined to. Names follow Kata: `tap<idx>_kata` and `eth<idx>` for the guest
 * unless the pod interface has a name.
 */
import type { InterworkingModel } from './interworking-model.js';
import { randomPrivateMacAddress } from './mac-address.js';

export interface TapInterface {
  name: string;
  /** The MAC the guest NIC gets. */
  guestHardwareAddress: string;
}

export interface VirtualInterface {
  name: string;
  hardwareAddress: string;
}

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
