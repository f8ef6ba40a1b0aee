/**
 * STATUS (CNI 1.1.0): whether vcnet-cni can serve an ADD now. It needs a state directory ADD would
 * accept and the tun device for taps; the rest (netlink, the pod namespace) is per ADD.
 */
import { accessSync, constants } from 'node:fs';
import type { CniConfig } from './config.js';
import { CniError, CniErrorCode } from './errors.js';
import { prepareStateDirectory } from './state.js';

export const TUN_DEVICE = '/dev/net/tun';

export function status(config: CniConfig, tunDevice: string = TUN_DEVICE): void {
  // ADD's own check (and directories), so STATUS never says ready for a stateDir ADD refuses, and
  // refuses it with ADD's code (7) and message.
  prepareStateDirectory(config.stateDirectory);
  try {
    accessSync(tunDevice, constants.R_OK | constants.W_OK);
  } catch (error) {
    throw new CniError(
      CniErrorCode.PLUGIN_NOT_AVAILABLE,
      'VCNET_CNI_NOT_AVAILABLE',
      `vcnet-cni cannot serve ADD: ${tunDevice} is not usable (${(error as NodeJS.ErrnoException).code}): no tap can be made`,
      { value: tunDevice, hint: 'run vcnet-cni as root on a host with the tun module' },
    );
  }
}
