import type { Command } from 'commander';
import { detachSandbox } from '../../network/sandbox.js';
import { stateDirectory } from '../../network/state-store.js';
import { print, printJson } from '../output.js';

export function registerDetach(program: Command): void {
  program
    .command('detach')
    .description('undo exactly what attach made, from the recorded state alone')
    .requiredOption('--sandbox <id>', 'sandbox id')
    .option('--state-dir <dir>', 'where sandbox state lives')
    .option('--json', 'machine-readable output')
    .action(async (options: { sandbox: string; stateDir?: string; json?: boolean }) => {
      const result = await detachSandbox(options.sandbox, { stateDirectory: stateDirectory(options.stateDir) });
      if (options.json) {
        printJson({
          sandbox: result.id,
          found: result.found,
          undone: result.report?.undone ?? 0,
          alreadyGone: result.report?.alreadyGone ?? 0,
        });
        return;
      }
      if (!result.found) {
        print(`sandbox ${result.id} is not attached: nothing to do`);
        return;
      }
      const gone = result.report?.alreadyGone ? ` (${result.report.alreadyGone} already gone)` : '';
      print(`detached sandbox ${result.id}: ${result.report?.undone ?? 0} change(s) undone${gone}`);
    });
}
