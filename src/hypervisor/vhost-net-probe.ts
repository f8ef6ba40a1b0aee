/**
 * Whether a QEMU NIC gets vhost-net, decided as Kata decides it: on unless disable_vhost_net (vcnet:
 * `--vhost-net off`), and only when /dev/vhost-net exists; the reason is kept so it can be printed.
 */
import { existsSync } from 'node:fs';

export const VHOST_NET_DEVICE = '/dev/vhost-net';

export interface VhostNetProbe {
  available: boolean;
  reason: string;
}

export function probeVhostNet(setting: 'auto' | 'off', exists: (path: string) => boolean = existsSync): VhostNetProbe {
  if (setting === 'off') return { available: false, reason: 'disabled (disable_vhost_net = true, or --vhost-net off)' };
  if (!exists(VHOST_NET_DEVICE)) {
    return { available: false, reason: `${VHOST_NET_DEVICE} is missing (load the vhost_net kernel module)` };
  }
  return { available: true, reason: `${VHOST_NET_DEVICE} is present` };
}
