/** `vcnet configure-guest`: tells a booted VM's agent the sandbox's network (configureGuest). */
import type { Command } from 'commander';
import { decimalInteger } from '../../arguments.js';
import { InvalidInputError } from '../../errors.js';
import { stateDirectory } from '../../network/state/store.js';
import { importForCommand } from '../lazy-import.js';
import { print, printJson, writeStderr } from '../output.js';

export function registerConfigureGuest(program: Command): void {
  program
    .command('configure-guest')
    .summary("tell a booted VM's agent the sandbox's interfaces, routes and neighbours")
    .description(
      "once the VM has booted, tell its agent the sandbox's interfaces, full route set and neighbours (what Kata's runtime does at sandbox start)",
    )
    .requiredOption('--sandbox <id>', 'sandbox id')
    .option('--agent <socket>', "the guest agent's socket (default: the one given to attach)")
    .option(
      '--timeout <ms>',
      'deadline for connecting to the agent and for each call to it; a NIC the guest does not show yet is asked for again 20 times, 20 ms apart (as Kata), whatever this says',
      '60000',
    )
    .option('--state-dir <dir>', 'where sandbox state lives')
    .option('--json', 'machine-readable output')
    .action(
      async (options: { sandbox: string; agent?: string; timeout: string; stateDir?: string; json?: boolean }) => {
        const timeoutMs = decimalInteger('--timeout', options.timeout, 1, 3_600_000, 'milliseconds from 1 to 3600000');
        // Loaded here: it brings the agent's protobuf code, which most commands never use.
        const { configureGuest } = await importForCommand(
          '`vcnet configure-guest`',
          () => import('../../sandbox/configure-guest.js'),
        );
        const result = await configureGuest(options.sandbox, {
          stateDirectory: stateDirectory(options.stateDir),
          ...(options.agent ? { agentSocket: options.agent } : {}),
          timeoutMs,
          warn: (message) => writeStderr(`vcnet: warning: ${message}\n`),
        }).catch((error: unknown) => {
          // The library names its option and attachSandbox; a CLI user typed a flag and ran vcnet attach.
          if (!(error instanceof InvalidInputError && error.field === 'agentSocket')) throw error;
          throw error.underField(
            '--agent',
            error.value === undefined
              ? `sandbox ${options.sandbox} has none recorded: pass --agent, or give it to vcnet attach (--agent) when the VM runs`
              : undefined,
          );
        });
        if (options.json) return printJson(result);
        print(
          `configured the guest of sandbox ${options.sandbox}: ${result.interfaces.join(', ') || 'no interfaces'}; ` +
            `${result.routes.length} route(s) in its table, ${result.neighbours} neighbour(s)`,
        );
      },
    );
}
