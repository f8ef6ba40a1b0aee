/** `vcnet demo`: the whole story on this machine (real CNI, a VM, traffic, hot-plug, teardown). */
import type { Command } from 'commander';
import { decimalInteger } from '../../arguments.js';
import { InvalidInputError } from '../../errors.js';
import { importForCommand } from '../lazy-import.js';
import { print, printJson, routeDestination, table } from '../output.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .summary('the whole story on this machine: real CNI, a real VM, traffic, hot-plug, teardown')
    .description(
      'the whole story on this machine: real CNI, a real VM, traffic, hot-plug, teardown (root, ~1 minute under TCG)',
    )
    .option('--model <model>', 'tcfilter or macvtap', 'tcfilter')
    .option('--iperf-seconds <n>', 'seconds of iperf3 each way (0 skips iperf3)', '3')
    .option('--json', 'print the result as JSON at the end')
    .option('--progress', 'print progress lines even when stderr is not a terminal')
    .action(async (options: { model: string; iperfSeconds: string; json?: boolean; progress?: boolean }) => {
      if (options.model !== 'tcfilter' && options.model !== 'macvtap')
        throw new InvalidInputError('--model', options.model, 'tcfilter, macvtap');
      const seconds = decimalInteger('--iperf-seconds', options.iperfSeconds, 0, 60, 'an integer from 0 to 60');
      // Loaded here, not at start: the demo brings QEMU, the agent and its protobuf code.
      const { mbps, runDemo } = await importForCommand('`vcnet demo`', () => import('../../demo/scenario.js'));
      const started = performance.now();
      const result = await runDemo({
        model: options.model,
        iperfSeconds: seconds,
        progress: (line) =>
          process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}\n`),
      });
      if (options.json) {
        printJson(result);
        return;
      }
      print('\nsummary');
      print(
        table(
          ['WHAT', 'RESULT'],
          [
            ['model / accelerator', `${result.model} / ${result.accelerator}`],
            [
              'endpoints',
              result.endpoints.map((e) => `${e.name} (${e.type}) -> ${e.tap}, guest MAC ${e.hwAddr}`).join('; '),
            ],
            ['vcnet attach', `${result.attachMs.toFixed(1)} ms`],
            ['guest up and configured', `${(result.bootMs / 1000).toFixed(1)} s after QEMU started`],
            [
              'guest addresses',
              result.guest.interfaces
                .map((i) => `${i.name} ${i.IPAddresses.map((a) => `${a.address}/${a.mask}`).join(',')}`)
                .join('; '),
            ],
            [
              'guest routes',
              result.guest.routes
                .map((r) => `${routeDestination(r.dest)} via ${r.gateway || '-'} dev ${r.device}`)
                .join('; '),
            ],
            ['ping node -> guest', `${result.traffic.pingLossPercent}% loss, avg ${result.traffic.pingAverageMs} ms`],
            [
              'iperf3 to / from guest',
              `${mbps(result.traffic.iperfToGuestBitsPerSecond)} / ${mbps(result.traffic.iperfFromGuestBitsPerSecond)}`,
            ],
            [
              'hot-plug',
              `${result.hotplug.interface} at PCI ${result.hotplug.pciPath ?? '?'}: host ${result.hotplug.hostMs.toFixed(1)} ms, guest ${result.hotplug.guestMs.toFixed(1)} ms`,
            ],
            [
              'ping on hot-plugged NIC',
              `${result.hotplug.traffic.pingLossPercent}% loss, avg ${result.hotplug.traffic.pingAverageMs} ms`,
            ],
            [
              'unplug',
              result.hotplug.unplugged ? 'released by the guest' : `not acknowledged: ${result.hotplug.unplugError}`,
            ],
            ['teardown', 'VM stopped, plumbing removed, namespaces deleted'],
          ],
        ),
      );
    });
}
