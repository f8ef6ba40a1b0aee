import type { Command } from 'commander';
import { collectGarbage } from '../../network/garbage-collector.js';
import { print, printJson, table } from '../output.js';

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description(
      'remove taps, macvtaps, ifbs and filters vcnet made whose sandbox is gone, and records of deleted namespaces',
    )
    .option('--dry-run', 'only list what would be removed')
    .option(
      '--netns <path...>',
      'namespaces to look in (default: every /var/run/netns entry and every recorded sandbox)',
    )
    .option('--state-dir <dir>', 'where sandbox state lives')
    .option('--json', 'machine-readable output')
    .action(async (options: { dryRun?: boolean; netns?: string[]; stateDir?: string; json?: boolean }) => {
      const report = await collectGarbage({
        ...(options.stateDir ? { stateDirectory: options.stateDir } : {}),
        ...(options.netns ? { namespaces: options.netns } : {}),
        dryRun: options.dryRun ?? false,
      });
      if (options.json) {
        printJson(report);
        return;
      }
      if (report.removed.length === 0) {
        print(`nothing to collect (${report.kept} vcnet link(s) belong to live sandboxes)`);
        return;
      }
      print(`${report.dryRun ? 'would remove' : 'removed'} ${report.removed.length} item(s):`);
      print(
        table(
          ['KIND', 'NAMESPACE', 'NAME', 'DETAIL'],
          report.removed.map((item) => [item.kind, item.namespacePath, item.name, item.detail ?? '']),
        ),
      );
    });
}
