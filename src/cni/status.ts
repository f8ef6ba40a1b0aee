/**
 * STATUS (CNI 1.1.0): whether vcnet-cni can serve an ADD now. It needs a state directory ADD would
 * accept and the tun device for taps; the rest (netlink, the pod namespace) is per ADD.
 */
import { accessSync, constants } from 'node:fs';
import { VcnetError } from '../errors.js';
import type { CniConfig } from './config.js';
import { CniError } from './errors.js';
import { prepareStateDirectory } from './state.js';

const TUN_DEVICE = '/dev/net/tun';

/**
 * The spec gives STATUS its own codes: 50 says the plugin cannot serve ADD now, which is what a
 * runtime acts on (kubelet's NetworkReady). The reason is ADD's own check and text, so STATUS never
 * says ready for a stateDir ADD refuses.
 */
export function status(config: CniConfig, tunDevice: string = TUN_DEVICE): void {
  const problems: string[] = [];
  const hints: string[] = [];
  try {
    // Read-only: STATUS makes nothing, a missing stateDir is judged by the directory ADD would make it in.
    prepareStateDirectory(config.stateDirectory, { makeNothing: true });
  } catch (error) {
    problems.push((error as Error).message);
    if (error instanceof VcnetError && error.hint) hints.push(error.hint);
  }
  try {
    accessSync(tunDevice, constants.R_OK | constants.W_OK);
  } catch (error) {
    problems.push(`${tunDevice} is not usable (${(error as NodeJS.ErrnoException).code}): no tap can be made`);
    hints.push('run vcnet-cni as root on a host with the tun module');
  }
  if (problems.length === 0) return;
  throw new CniError('VCNET_CNI_NOT_AVAILABLE', `vcnet-cni cannot serve ADD: ${problems.join('; ')}`, {
    value: problems,
    hint: hints.join('; '),
  });
}
