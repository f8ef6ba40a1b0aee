/**
 * The `vcnet` command (main.ts, the program's first file, loads it and runs main()). Every subcommand
 * lives in commands/; errors become one line and an exit code.
 */
import { Command, CommanderError } from 'commander';
import { classifyError, VcnetError } from '../errors.js';
import { VCNET_VERSION } from '../version.js';
import { registerAttach } from './commands/attach.js';
import { registerBench } from './commands/bench.js';
import { registerConfigureGuest } from './commands/configure-guest.js';
import { registerDemo } from './commands/demo.js';
import { registerDetach } from './commands/detach.js';
import { registerGc } from './commands/gc.js';
import { registerInstallCni } from './commands/install-cni.js';
import { registerIpTables } from './commands/iptables.js';
import { registerKataNetwork } from './commands/kata-network.js';
import { registerList } from './commands/list.js';
import { registerScan } from './commands/scan.js';
import { registerWatch } from './commands/watch.js';
import { exitCodeFor } from './exit-codes.js';
import { importForCommand } from './lazy-import.js';
import { tracingRequested } from './observability/environment.js';
import { subscribeLogs } from './observability/log-subscriber.js';
import {
  bindLogContext,
  commandLogContext,
  configureLogger,
  LEVEL_NAMES,
  type LogFormat,
} from './observability/logger.js';
import { guardOutputStreams, OUTPUT_LOST_EXIT_CODE } from './observability/output-streams.js';
import { NO_TRACE_EXPORT, startTraceExportFrom } from './observability/trace-export.js';
import { checkSandboxFlags } from './options.js';
import { writeStderr } from './output.js';
import { addHelpCommand, helpExitCode, throwUsageErrors } from './usage.js';

let unsubscribeLogs: (() => void) | undefined;

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('vcnet')
    .description('Sandbox networking for VM-based containers: connect a VM to a CNI-filled network namespace')
    .version(VCNET_VERSION)
    .option(
      '--log-level <level>',
      `${LEVEL_NAMES.join(', ')}; silent writes no log lines; default $VCNET_LOG_LEVEL, else warn`,
      process.env.VCNET_LOG_LEVEL ?? 'warn',
    )
    .option('--log-format <format>', 'json or pretty (pretty on a TTY)')
    .hook('preAction', (command, action) => {
      const options = command.opts<{ logLevel?: string; logFormat?: LogFormat }>();
      // Every log line names the command, its sandbox and namespace (docs/diagnostics.md).
      bindLogContext(commandLogContext(commandPath(action), action));
      const log = configureLogger({
        ...(options.logLevel ? { level: options.logLevel } : {}),
        ...(options.logFormat ? { format: options.logFormat } : {}),
        // commander's default for --log-level is $VCNET_LOG_LEVEL: a bad one is named as the variable.
        levelFrom: command.getOptionValueSource('logLevel') === 'cli' ? '--log-level' : 'VCNET_LOG_LEVEL',
      });
      unsubscribeLogs?.();
      unsubscribeLogs = subscribeLogs(log);
      checkSandboxFlags(action.opts());
    });
  registerScan(program);
  registerAttach(program);
  registerConfigureGuest(program);
  registerDetach(program);
  registerKataNetwork(program);
  registerIpTables(program);
  registerWatch(program);
  registerGc(program);
  registerList(program);
  registerInstallCni(program);
  registerDemo(program);
  registerBench(program);
  addHelpCommand(program);
  throwUsageErrors(program);
  return program;
}

export function reportError(error: unknown, json: boolean): number {
  const code = exitCodeFor(error);
  if (json) {
    // The code and name a program matches on are the deciding error's (classifyError follows `cause`:
    // a name taken inside an attach is LinkNameTakenError, VCNET_LINK_NAME_TAKEN); the operation that
    // failed stays as outerCode and outerName. Message and hint stay the outer error's: they say both.
    // The errno too is the deciding error's: an EPERM inside an attach decides, the wrapper has none.
    const { code: decided, decidedBy, errno } = classifyError(error);
    const decidedName = decidedBy instanceof Error ? decidedBy.name : undefined;
    const body =
      error instanceof VcnetError
        ? {
            ...error.toJSON(),
            name: decidedName ?? error.name,
            code: decided,
            ...(errno !== undefined ? { errno } : {}),
            ...(decided !== error.code || (decidedName ?? error.name) !== error.name
              ? { outerName: error.name, outerCode: error.code }
              : {}),
          }
        : {
            // Its own class's name (TypeError...): a decoder that needs `name` meets it here too.
            name: error instanceof Error ? error.name : 'Error',
            code: 'VCNET_ERROR',
            ...(errno !== undefined ? { errno } : {}),
            message: String((error as Error)?.message ?? error),
          };
    process.stdout.write(`${JSON.stringify({ error: body })}\n`);
  }
  const message = (error as Error)?.message ?? String(error);
  writeStderr(`vcnet: ${message}\n`);
  if (error instanceof VcnetError && error.hint) writeStderr(`hint: ${error.hint}\n`);
  return code;
}

/** A subcommand's names from below the program down, dot-joined (`kata-network.add-iface`). */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let current: Command | null = command; current?.parent; current = current.parent) names.unshift(current.name());
  return names.join('.');
}

export async function main(): Promise<void> {
  // The exit status tells the operation's outcome; a success whose stdout was lost (full disk,
  // closed pipe, `vcnet scan | head` too) is 6, so a caller that reads the result cannot take the
  // missing JSON for an answer. A lost stderr (logs) changes nothing. A failure keeps its own code.
  guardOutputStreams((error) => {
    if (!process.exitCode) process.exitCode = OUTPUT_LOST_EXIT_CODE;
    writeStderr(
      `vcnet: the output on stdout was lost (${error.code ?? error.message}); the command runs to its end and exits ${OUTPUT_LOST_EXIT_CODE} unless it fails\n`,
    );
  });
  const program = buildProgram();
  // OpenTelemetry is loaded only when an OTEL_* variable asks for export (as in vcnet-cni).
  const traceExport = tracingRequested()
    ? await startTraceExportFrom(
        () => importForCommand('the trace export', () => import('./observability/exporter.js')),
        process.env,
      )
    : NO_TRACE_EXPORT;
  try {
    // One root span per command, parenting every span it makes (scans, attaches, netlink batches).
    await traceExport.inCommandSpan('vcnet.cli', {}, (span) => {
      // Named once commander has chosen the command: vcnet.cli.attach, vcnet.cli.kata-network.add-iface.
      program.hook('preAction', (_program, action) => span.rename(`vcnet.cli.${commandPath(action)}`));
      return program.parseAsync(process.argv);
    });
  } catch (error) {
    process.exitCode =
      error instanceof CommanderError ? helpExitCode(error) : reportError(error, process.argv.includes('--json'));
  } finally {
    // Never rejects: a collector down, slow or refusing spans is one warning line, not the outcome.
    if ((await traceExport.stop()) === 'timed-out') {
      // An export still in flight would hold the finished command open until its own timeout.
      process.exit(process.exitCode ?? 0);
    }
  }
}
