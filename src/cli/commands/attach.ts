/**
 * `vcnet attach`: attaches a pod namespace's interfaces for a VM and prints what its hypervisor needs
 * (with --dry-run, the plan instead).
 */
import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { probeVhostNet } from '../../hypervisor/vhost-net-probe.js';
import { refuseHostNamespaceUnlessShared } from '../../network/config.js';
import {
  type DeviceConfig,
  type HypervisorDeviceOptions,
  hypervisorDeviceConfig,
  plannedDeviceConfig,
} from '../../network/hypervisor-devices.js';
import type { SkippedNotice } from '../../network/network.js';
import { KERNEL_FALLBACK_TUNNEL_REASON } from '../../network/scan.js';
import { stateDirectory } from '../../network/state/store.js';
import { refuseMacvtapInUserNamespace } from '../../network/user-namespace.js';
import {
  attachSandbox,
  refuseHalfReachableVm,
  refuseMultiQueueFirecracker,
  type VmInputNames,
} from '../../sandbox/attach.js';
import { planSandboxAttach } from '../../sandbox/plan.js';
import { shellRedirections } from '../hypervisor-config.js';
import { logger } from '../observability/logger.js';
import {
  collect,
  inFlagTerms,
  LOCK_TIMEOUT_OPTION,
  type NetworkFlags,
  networkConfigFromFlags,
  parseLockTimeout,
} from '../options.js';
import { print, printComment, printJson, printText, routeDestination, table } from '../output.js';

export function registerAttach(program: Command): void {
  program
    .command('attach')
    .description('attach every interface of a pod namespace for a VM and record the sandbox')
    .requiredOption('--sandbox <id>', 'sandbox id')
    .option(
      '--netns <path>',
      "pod namespace path: /var/run/netns/NAME or /proc/PID/ns/net, not a process's socket or tap fd (/proc/PID/fd/N), which is refused (required unless --disable-new-netns)",
    )
    .option(
      '--model <model>',
      "internetworking model: tcfilter, macvtap, none, default (Kata's default, tcfilter) (default: --config's internetworking_model, else tcfilter)",
    )
    .option(
      '--config <file>',
      "Kata's configuration.toml with its config.d drop-ins (internetworking_model, disable_new_netns, rate limits, vhost, vCPUs or network_queues)",
    )
    .option(
      '--queues <n>',
      "queues per NIC (multi-queue taps when > 1) (default: from --config (default_vcpus, or runtime-rs's network_queues), else 1)",
    )
    .option(
      '--vhost-net <mode>',
      "auto (use /dev/vhost-net when present) or off (default: --config's disable_vhost_net, else auto)",
    )
    .option(
      '--interface <name>',
      'attach this pod link even though it has no address (links without one are skipped); repeatable',
      collect,
    )
    .option('--disable-new-netns', 'the hypervisor runs in the host namespace (model none only)')
    .option(
      '--vhost-user-store <dir>',
      "where vhost-user-net sockets are looked for (<dir>/vhostuser_<ip>/vhu.sock; default Kata's /tmp), as scan's",
    )
    .option(
      '--tap-owner <uid|name>',
      "the owner of every tap made for the sandbox, now and by later add-iface/watch: a process without CAP_NET_ADMIN (a VMM run as another user) opens a tap by name only as its owner and in its group, of those set. Default, with neither flag: owner vcnet's euid and group its egid (0 and 0 as root, as Kata); with one flag only that one is set",
    )
    .option('--tap-group <gid|name>', 'the group of every tap made for the sandbox (see --tap-owner)')
    .option('--state-dir <dir>', 'where sandbox state lives (default $VCNET_STATE_DIR or /run/vcnet/sandboxes)')
    .option(
      '--hypervisor <kind>',
      'qemu, clh (or cloud-hypervisor) or firecracker: prints its device configuration (default: the --config [hypervisor.*] section, else qemu)',
    )
    .option(
      '--qmp <socket>',
      "the running VM's QMP socket (QEMU, with --agent): later add-iface/del-iface/watch hot-plug through it",
    )
    .option(
      '--api-socket <socket>',
      "the running VM's API socket (Cloud Hypervisor, with --agent: later add-iface/del-iface/watch hot-plug through it; Firecracker: only a marker that the VM has booted, never connected to: later add-iface/del-iface/watch are refused, list-ifaces/list-routes read the agent or the record)",
    )
    .option(
      '--agent <address>',
      "the guest agent (with --qmp or --api-socket): QEMU's agent chardev socket path, or hvsock://VSOCK_SOCKET:PORT for Cloud Hypervisor and Firecracker (Kata's agent port: 1024); later changes configure the guest through it",
    )
    .option(...LOCK_TIMEOUT_OPTION)
    .option('--json', 'machine-readable output')
    .option(
      '--dry-run',
      'print the plan as ip/tc commands to run inside the namespace (pipe them to `ip netns exec NAME sh -e`), and change nothing',
    )
    .action(
      async (
        options: NetworkFlags & {
          sandbox: string;
          stateDir?: string;
          json?: boolean;
          dryRun?: boolean;
          hypervisor?: string;
          qmp?: string;
          apiSocket?: string;
          agent?: string;
          lockTimeout?: string;
        },
      ) => {
        const lockTimeoutMs = parseLockTimeout(options.lockTimeout);
        const { config, hypervisor } = networkConfigFromFlags(options);
        // nodes (issue 12): never the host. An early answer by the path only: the decision that counts is
        // made on the namespace attach opened and works in (Network.open), which no path can swap.
        refuseHostNamespaceUnlessShared(config, 'attach');
        // A macvtap's /dev/tapN is the host root's: refused in a user namespace before anything is made.
        refuseMacvtapInUserNamespace(config.model, options.model !== undefined ? '--model' : 'model');
        // nodes (issue 12): a hypervisor that cannot take the pod's physical NICs is refused by the
        // sandbox service from the attach's own scan, before anything is made.
        // The library's own checks (attachSandbox makes them too), here in the flags' terms and before the dry run.
        const controlFlag = hypervisor === 'qemu' ? '--qmp' : '--api-socket';
        const flagNames: VmInputNames = {
          kind: '--hypervisor',
          controlSocket: controlFlag,
          agentSocket: '--agent',
          queues: '--queues',
          vmChanges: 'add-iface, del-iface and watch',
        };
        refuseMultiQueueFirecracker(hypervisor, config.queues, flagNames);
        if (options.qmp && hypervisor !== 'qemu')
          throw new InvalidInputError(
            '--qmp',
            options.qmp,
            'only with --hypervisor qemu',
            "Cloud Hypervisor's and Firecracker's control socket is their API socket: give it as --api-socket",
          );
        // Before the socket pairing below, which would otherwise blame a missing --qmp on a user who
        // gave QEMU the other hypervisors' control socket.
        if (options.apiSocket && hypervisor === 'qemu')
          throw new InvalidInputError(
            '--api-socket',
            options.apiSocket,
            'only with --hypervisor clh or firecracker',
            "QEMU's control socket is its QMP socket: give it as --qmp (with --agent), or pass --hypervisor clh or firecracker",
          );
        // Before the dry run too: a plan printed for flags attach would refuse would mislead.
        refuseHalfReachableVm(
          hypervisor,
          hypervisor === 'qemu' ? options.qmp : options.apiSocket,
          options.agent,
          flagNames,
        );
        const deviceOptions = (vhostNet: boolean): HypervisorDeviceOptions => ({
          ...(config.vmmRateLimiter ? { vmmRateLimiter: config.vmmRateLimiter } : {}),
          vhostNet,
          ...(config.nicIommu ? { iommu: true } : {}),
          hypervisorField: '--hypervisor',
          ...(config.namespacePath !== undefined ? { namespacePath: config.namespacePath } : {}),
        });
        if (options.dryRun) {
          const planned = await inFlagTerms(() =>
            planSandboxAttach(config, options.sandbox, hypervisor, {
              stateDirectory: stateDirectory(options.stateDir),
              ...(options.agent !== undefined ? { agentSocket: options.agent } : {}),
              // The attach's own check of the VMM's device configuration (checkEndpoints below).
              checkEndpoints: (endpoints) => {
                plannedDeviceConfig(hypervisor, endpoints, config.queues, deviceOptions(false));
              },
            }),
          );
          // What attach would leave out, said as attach says it (a warning each) and in the answer.
          logSkipped(planned.skipped);
          if (options.json) {
            printJson({
              sandbox: options.sandbox,
              netns: config.namespacePath,
              dryRun: true,
              endpoints: planned.endpoints,
              skipped: skippedOf(planned.skipped),
            });
            return;
          }
          printComment(
            `vcnet attach --dry-run: sandbox ${options.sandbox}, namespace ${config.namespacePath}, model ${config.model}`,
          );
          print('# run inside the namespace, e.g.: ... | ip netns exec NAME sh -e  (or nsenter --net=PATH sh -e)');
          for (const { reason, message } of planned.skipped)
            if (reason !== KERNEL_FALLBACK_TUNNEL_REASON) printComment(`not attached: ${message}`);
          for (const endpoint of planned.endpoints) {
            printComment(
              `${endpoint.source} (${endpoint.type}): ${endpoint.plan ? `${endpoint.plan.model}, ${endpoint.commands.length} change(s)` : 'used by the VM as it is, nothing to change'}`,
            );
            for (const command of endpoint.commands) print(command);
          }
          return;
        }
        const controlSocket = options.qmp ?? options.apiSocket;
        // QEMU opens the taps by name here, so vhost=on asks it to open /dev/vhost-net itself.
        const vhost = hypervisor === 'qemu' ? probeVhostNet(config.vhostNet) : undefined;
        let devices: DeviceConfig[] = [];
        const result = await inFlagTerms(() =>
          attachSandbox(options.sandbox, config, {
            stateDirectory: stateDirectory(options.stateDir),
            hypervisor: { kind: hypervisor, ...(controlSocket ? { controlSocket } : {}) },
            ...(options.agent ? { agentSocket: options.agent } : {}),
            ...(lockTimeoutMs !== undefined ? { lockTimeoutMs } : {}),
            // A configuration the hypervisor cannot take undoes the attach: the VM could not use it.
            checkEndpoints: (endpoints) => {
              devices = hypervisorDeviceConfig(hypervisor, endpoints, deviceOptions(vhost?.available ?? false));
            },
          }),
        );
        if (vhost && !vhost.available)
          // About every NIC: endpoint null (the command's context gives sandbox, netns, operation).
          logger().info({ endpoint: null, reason: vhost.reason }, `vhost-net off for the QEMU NICs: ${vhost.reason}`);
        logSkipped(result.skipped);
        const endpoints = result.endpoints.map((endpoint) => ({
          name: endpoint.name,
          type: endpoint.type,
          source: endpoint.properties.link.name,
          model: endpoint.plumbing?.model ?? null,
          tap: endpoint.plumbing?.tapName ?? null,
          tapDevice: endpoint.plumbing?.tapDevicePath ?? null,
          hwAddr: endpoint.hardwareAddress,
          queues: endpoint.plumbing?.queues ?? 1,
        }));
        if (options.json) {
          printJson({
            sandbox: result.id,
            state: result.statePath,
            endpoints,
            hypervisor: {
              kind: hypervisor,
              devices,
              ...(vhost ? { vhostNet: vhost.available ? 'on' : `off: ${vhost.reason}` } : {}),
            },
            ...result.guest,
            // Links left out (no address and not named with --interface): part of the answer, as scan's.
            skipped: skippedOf(result.skipped),
          });
          return;
        }
        printText(
          `attached sandbox ${result.id} (${endpoints.length} endpoint${endpoints.length === 1 ? '' : 's'}, state ${result.statePath})`,
        );
        print(
          table(
            ['GUEST NAME', 'TYPE', 'POD IF', 'MODEL', 'VM DEVICE', 'GUEST MAC', 'QUEUES'],
            endpoints.map((e) => [
              e.name,
              e.type,
              e.source,
              e.model ?? '-',
              e.tapDevice ?? e.tap ?? '-',
              e.hwAddr,
              String(e.queues),
            ]),
          ),
        );
        // The reason is part of the answer, not a warning: most nodes have vhost_net, this one may not.
        print(
          `\n${hypervisor} device configuration${vhost && !vhost.available ? ` (vhost-net off: ${vhost.reason})` : ''}:`,
        );
        for (const device of devices)
          printText(
            `  ${device.endpoint}: ${Array.isArray(device.config) ? device.config.join(' ') : JSON.stringify(device.config)}${
              device.fds ? ` ${shellRedirections(device.fds)}` : ''
            }`,
          );
        print('\nguest interfaces:');
        print(
          table(
            ['DEVICE', 'ADDRESSES', 'MTU', 'MAC'],
            result.guest.interfaces.map((i) => [
              i.name,
              i.IPAddresses.map((a) => `${a.address}/${a.mask}`).join(',') || '-',
              String(i.mtu),
              i.hwAddr,
            ]),
          ),
        );
        print('\nguest routes:');
        print(
          table(
            ['DEST', 'GATEWAY', 'DEVICE', 'MTU'],
            result.guest.routes.map((r) => [
              routeDestination(r.dest),
              r.gateway || '-',
              r.device,
              r.mtu ? String(r.mtu) : '-',
            ]),
          ),
        );
        if (result.guest.neighbours.length > 0) {
          print('\nguest neighbours:');
          print(
            table(
              ['ADDRESS', 'LLADDR', 'DEVICE'],
              result.guest.neighbours.map((n) => [n.toIPAddress.address, n.lladdr || '-', n.device]),
            ),
          );
        }
      },
    );
}

/** One log line per pod link attach leaves out: a warning, but for the kernel's fallback tunnels. */
function logSkipped(skipped: readonly SkippedNotice[]): void {
  for (const { message, ...fields } of skipped) {
    // The kernel's fallback tunnels (tunl0, gre0, …) are in every namespace: nothing to warn of.
    if (fields.reason === KERNEL_FALLBACK_TUNNEL_REASON) logger().debug(fields, message);
    else logger().warn(fields, message);
  }
}

/** The links attach leaves out, as its JSON gives them (scan's shape). */
function skippedOf(skipped: readonly SkippedNotice[]): Array<{ source: string; reason: string }> {
  return skipped.map(({ endpoint, reason }) => ({ source: endpoint, reason }));
}
