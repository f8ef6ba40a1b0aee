/**
 * The network vcnet-cni is chained after in the demo, the tests and `vcnet install-cni`'s conflist:
 * the reference bridge plugin with host-local IPAM.
 */

import { isIPv6 } from 'node:net';

/**
 * A bridge network as a kubelet would configure it, with host-local IPAM keeping its leases in dataDir.
 * The default route is the subnet's family's: an IPv6 subnet with 0.0.0.0/0 gave pods an IPv4
 * default route through a bridge without IPv4, and no IPv6 one.
 */
export function bridgeNetwork(options: {
  name: string;
  bridge: string;
  subnet: string;
  dataDir: string;
  defaultRoute: boolean;
}): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: options.name,
    type: 'bridge',
    bridge: options.bridge,
    isGateway: true,
    ipMasq: false,
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: options.subnet }]],
      dataDir: options.dataDir,
      ...(options.defaultRoute
        ? { routes: [{ dst: isIPv6(options.subnet.split('/')[0] ?? '') ? '::/0' : '0.0.0.0/0' }] }
        : {}),
    },
  };
}
