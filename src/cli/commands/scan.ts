/** `vcnet scan`: lists a namespace's links and what attach would make of each. */
import type { Command } from 'commander';
import { AddressFamily } from '../../netlink/codec/constants.js';
import { openNetworkNamespace } from '../../netns/namespace-identity.js';
import { classifyScan, scanNamespace } from '../../network/scan.js';
import { print, printJson, table } from '../output.js';

export function registerScan(program: Command): void {
  program
    .command('scan')
    .summary("list a namespace's interfaces and the endpoint type each would become")
    .description('list the interfaces of a namespace and the endpoint type each would become (or why not)')
    .requiredOption(
      '--netns <path>',
      "namespace path, e.g. /var/run/netns/pod or /proc/PID/ns/net; also a process's socket or tap fd made in it (/proc/PID/fd/N, where vcnet list says a namespace is held)",
    )
    .option(
      '--vhost-user-store <dir>',
      "where vhost-user-net sockets are looked for (<dir>/vhostuser_<ip>/vhu.sock; default Kata's /tmp), as attach's",
    )
    .option('--json', 'machine-readable output')
    .action(async (options: { netns: string; json?: boolean; vhostUserStore?: string }) => {
      // Opened once and scanned through its fd, on the socket made there to read its cookie: one socket.
      const opened = openNetworkNamespace(options.netns, '--netns');
      const handle = opened.netlinkHandle(options.netns);
      try {
        const scanned = classifyScan(await scanNamespace(handle), {
          ...(options.vhostUserStore ? { vhostUserStorePath: options.vhostUserStore } : {}),
        });
        if (options.json) {
          printJson(
            scanned.map(({ info, endpointType, unsupported, skipped }) => ({
              name: info.link.name,
              index: info.link.index,
              kind: info.link.kind ?? null,
              mtu: info.link.mtu,
              hwAddr: info.link.address ?? null,
              addresses: info.addresses.map((a) => `${a.address}/${a.prefixLength}`),
              routes: info.routes.map((r) => ({
                dest: r.destination ? `${r.destination}/${r.destinationLength}` : 'default',
                gateway: r.gateway ?? null,
                protocol: r.protocol,
                mtu: r.mtu ?? null,
              })),
              neighbours: info.neighbours.map((n) => ({
                address: n.destination,
                lladdr: n.linkLayerAddress ?? null,
                state: n.state,
              })),
              endpointType: endpointType ?? null,
              unsupported: unsupported ?? null,
              skipped: skipped ?? null,
            })),
          );
          return;
        }
        print(
          table(
            ['NAME', 'KIND', 'MTU', 'MAC', 'ADDRESSES', 'ROUTES', 'ENDPOINT'],
            scanned.map(({ info, endpointType, unsupported, skipped }) => [
              info.link.name,
              info.link.kind ?? '-',
              String(info.link.mtu),
              info.link.address ?? '-',
              info.addresses
                .filter((a) => !(a.family === AddressFamily.INET6 && a.address.startsWith('fe80')))
                .map((a) => `${a.address}/${a.prefixLength}`)
                .join(',') || '-',
              String(info.routes.length),
              skipped ? `skipped: ${skipped}` : (endpointType ?? `unsupported: ${unsupported?.message ?? ''}`),
            ]),
          ),
        );
      } finally {
        await handle.close();
        opened.close();
      }
    });
}
