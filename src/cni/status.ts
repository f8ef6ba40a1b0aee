/**
 * STATUS (CNI 1.1.0): whether vcnet-cni can serve an ADD now. It needs a state directory it can
 * write and the tun device for taps; the rest (netlink, the pod namespace) is per ADD.
 */
import { accessSync, constants } from 'node:fs';
import { DirectoryNotMadeError, makeDirectory } from '../network/state/directory.js';
import type { CniConfig } from './config.js';
import { CniError, CniErrorCode } from './errors.js';

export const TUN_DEVICE = '/dev/net/tun';

export function status(config: CniConfig, tunDevice: string = TUN_DEVICE): void {
  const problems: string[] = [];
  try {
    makeDirectory(config.stateDirectory, 0o700);
    accessSync(config.stateDirectory, constants.W_OK);
  } catch (error) {
    const reason = error instanceof DirectoryNotMadeError ? error.reason : (error as NodeJS.ErrnoException).code;
    problems.push(`state directory ${config.stateDirectory} is not writable (${reason})`);
  }
  try {
    accessSync(tunDevice, constants.R_OK | constants.W_OK);
  } catch (error) {
    problems.push(`${tunDevice} is not usable (${(error as NodeJS.ErrnoException).code}): no tap can be made`);
  }
  if (problems.length > 0) {
    throw new CniError(
      CniErrorCode.PLUGIN_NOT_AVAILABLE,
      'VCNET_CNI_NOT_AVAILABLE',
      `vcnet-cni cannot serve ADD: ${problems.join('; ')}`,
      {
        value: problems,
        hint: 'run vcnet-cni as root on a host with the tun module; point stateDir at a writable directory',
      },
    );
  }
}
