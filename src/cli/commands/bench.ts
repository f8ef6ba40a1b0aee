/** `vcnet bench attach`: vcnet's attach and detach against iproute2's in a namespace it makes (benchmark/attach-benchmark.ts). */
import type { Command } from 'commander';
import { decimalInteger } from '../../arguments.js';
import { runAttachBenchmark } from '../../benchmark/attach-benchmark.js';
import { InvalidInputError } from '../../errors.js';
import { print, table } from '../output.js';

function positive(field: string, text: string): number {
  return decimalInteger(field, text, 1, 1000, 'an integer from 1 to 1000');
}

export function registerBench(program: Command): void {
  const bench = program
    .command('bench')
    .description('measure vcnet against iproute2 in a namespace it makes and deletes');
  bench
    .command('attach')
    .description(
      'tcfilter attach and detach of N endpoints, vcnet and iproute2 in the same run (median per endpoint), and the kernel floor of the attach',
    )
    .option('--endpoints <n>', 'endpoints per sandbox', '1')
    .option('--iterations <k>', 'repetitions', '20')
    .option('--model <model>', 'tcfilter, macvtap or none (iproute2 baseline for tcfilter)', 'tcfilter')
    .option('--json', 'print one JSON object as the last line')
    .action(async (options: { endpoints: string; iterations: string; model: string; json?: boolean }) => {
      if (!['tcfilter', 'macvtap', 'none'].includes(options.model))
        throw new InvalidInputError('--model', options.model, 'tcfilter, macvtap, none');
      const result = await runAttachBenchmark({
        endpoints: positive('--endpoints', options.endpoints),
        iterations: positive('--iterations', options.iterations),
        model: options.model as 'tcfilter',
      });
      if (options.json) {
        print(JSON.stringify(result));
        return;
      }
      const rows = [['vcnet', `${result.attach_us}`, `${result.detach_us}`]];
      if (result.iproute2_attach_us !== undefined) {
        rows.push(['iproute2', `${result.iproute2_attach_us}`, `${result.iproute2_detach_us}`]);
        rows.push(['ratio', `${result.attach_ratio}x`, `${result.detach_ratio}x`]);
      }
      print(
        `${result.model}, ${result.endpoints} endpoint(s), ${result.iterations} iterations, median µs per endpoint`,
      );
      print(table(['', 'ATTACH µs', 'DETACH µs'], rows));
      print(
        `kernel floor (tap ioctls + netlink sendto/recv): ${result.floor_us} µs, attach = ${result.floor_ratio}x floor; ` +
          `in CPU time: attach ${result.attach_cpu_us} µs, floor ${result.floor_cpu_us} µs (${result.floor_cpu_ratio}x)`,
      );
      print(
        `outside the floor: ${result.outside_floor_us.syscalls} µs in the tap's open/close and the namespace switch, ` +
          `${result.outside_floor_us.other} µs in JavaScript and the rest`,
      );
    });
}
