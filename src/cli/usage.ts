/**
 * commander's usage errors (an unknown option or command, a missing option or argument) as vcnet
 * errors: exit 2 like every other bad input, one short message with a pointer to the command's
 * `--help` instead of the whole help text, and the `{"error": {...}}` object under `--json`.
 */
import type { Command, CommanderError } from 'commander';
import { VcnetError } from '../errors.js';
import { shellWord } from '../shell-word.js';
import { writeHelpToStdout } from './observability/output-streams.js';

/** A command line commander refused; nothing was run. */
export class UsageError extends VcnetError {
  static override readonly errorName: string = 'UsageError';
  constructor(message: string, commandPath: string, lists: string, hint = `\`${commandPath} --help\` lists ${lists}`) {
    super('VCNET_INVALID_INPUT', message, { hint });
  }
}

/** kata-runtime's `kata-network` subcommands, which are vcnet's own commands. */
const KATA_NETWORK_SUBCOMMANDS = ['add-iface', 'del-iface', 'list-ifaces', 'update-routes', 'list-routes'];

/**
 * The hint for `vcnet kata-network add-iface ...`, kata-runtime's command line with vcnet's name put
 * in front (compatibility.md maps each one to a vcnet command of the same name).
 */
function kataNetworkHint(commandArguments: readonly string[], asked = 'vcnet'): string {
  const [, subcommand, ...rest] = commandArguments;
  const known = subcommand !== undefined && KATA_NETWORK_SUBCOMMANDS.includes(subcommand);
  const fallback = asked === 'vcnet' ? 'vcnet add-iface SANDBOX FILE' : `${asked} add-iface`;
  const example = known ? [asked, subcommand, ...rest.map(shellWord)].join(' ') : fallback;
  return `kata-runtime's kata-network subcommands are vcnet commands of their own (${KATA_NETWORK_SUBCOMMANDS.join(', ')}): leave out kata-network, as in \`${example}\``;
}

/** commander's Command has `unknownOption`, the report of an unknown option, but its types omit it. */
type UnknownOptionReporter = Command & { unknownOption(flag: string): never };

function commandPathOf(command: Command): string {
  const names: string[] = [];
  for (let current: Command | null = command; current; current = current.parent) names.unshift(current.name());
  return names.join(' ');
}

/**
 * `vcnet help [command...]`, in place of commander's own help command, which follows one name only:
 * `vcnet help bench attach` printed bench's help. This one follows every name given down the command
 * tree and prints the last one's help (stdout, exit 0); a name that is not a command there is a
 * UsageError, as `vcnet nosuch` is. Added last, so that it is listed last, as commander's was.
 */
export function addHelpCommand(program: Command): void {
  program
    .command('help [command...]')
    .description("display help for a command, or for a command's subcommand (vcnet help bench attach)")
    .action((names: string[]) => {
      let shown: Command = program;
      for (const name of names) {
        const found = shown.commands.find((command) => command.name() === name || command.aliases().includes(name));
        if (!found) {
          const lists = shown.commands.length > 0 ? 'its commands' : 'its options';
          const has = shown.commands.length > 0 ? '' : ` (${commandPathOf(shown)} has no subcommands)`;
          // `vcnet help kata-network add-iface`: said as `vcnet kata-network add-iface` is.
          const hint = shown === program && name === 'kata-network' ? kataNetworkHint(names, 'vcnet help') : undefined;
          throw new UsageError(`unknown command '${name}'${has}`, commandPathOf(shown), lists, hint);
        }
        shown = found;
      }
      shown.help();
    });
}

/**
 * The exit status after commander printed help or the version instead of running a command: 0, but 2
 * for `vcnet` or `vcnet bench` without a subcommand (the help went to stderr as the answer).
 */
export function helpExitCode(error: CommanderError): number {
  return error.code === 'commander.help' && error.exitCode !== 0 ? 2 : 0;
}

/**
 * Makes `command` and all its subcommands throw instead of exiting, with a UsageError that names the
 * command whose line was refused; commander's own error printing is turned off (the CLI reports it).
 */
export function throwUsageErrors(command: Command): void {
  command.configureOutput({ outputError: () => undefined, writeOut: writeHelpToStdout });
  // What commander's last parse of this command's line left unknown: `args` mixes it with the
  // operands, and an operand may look like an option (`-- -y`, a negative number).
  let unknownArguments: string[] = [];
  const parseOptions = command.parseOptions.bind(command);
  command.parseOptions = (argv) => {
    const parsed = parseOptions(argv);
    unknownArguments = parsed.unknown;
    return parsed;
  };
  command.exitOverride((error: CommanderError) => {
    if (error.code.startsWith('commander.help') || error.code === 'commander.version') throw error;
    // commander checks required options before unknown ones, so `--sandbx ID` read as "--sandbox not
    // specified", hiding the typo. The first unknown option, if any, is the error to report (with its
    // "Did you mean"), as commander reports it after that check: the first of what its parse left
    // unknown. An operand that looks like an option is not one: `--sandbox` is still what is missing.
    if (error.code === 'commander.missingMandatoryOptionValue') {
      const unknownOption = unknownArguments[0];
      // unknownOption (commander's own, untyped) throws through this override with its message.
      if (unknownOption !== undefined) (command as UnknownOptionReporter).unknownOption(unknownOption);
    }
    const lists = command.commands.length > 0 ? 'its commands' : 'its options';
    const message = error.message.replace(/^error: /, '');
    if (error.code === 'commander.unknownCommand' && !command.parent && command.args[0] === 'kata-network')
      throw new UsageError(message, commandPathOf(command), lists, kataNetworkHint(command.args));
    throw new UsageError(message, commandPathOf(command), lists);
  });
  refuseRepeatedValues(command);
  for (const subcommand of command.commands) throwUsageErrors(subcommand);
}

/**
 * An option that takes one value, given again with another (`--netns /var/run/netns/a --netns
 * /var/run/netns/b`), is refused under `command`: commander keeps the last value without a word, so
 * an attach went ahead in the second namespace whichever one the user meant. The same value twice is
 * no question and is taken. Options made to repeat are left alone: variadic ones (gc's `--netns
 * <path...>`) and those with a parser of their own (attach's `--interface`, which collects).
 */
function refuseRepeatedValues(command: Command): void {
  for (const option of command.options) {
    if (!(option.required || option.optional) || option.variadic || option.parseArg !== undefined) continue;
    const given: string[] = [];
    command.on(`option:${option.name()}`, (value: string | undefined) => {
      const text = value ?? '';
      if (given.length > 0 && !given.includes(text)) {
        const values = [...given, text].map((each) => JSON.stringify(each)).join(', then ');
        throw new UsageError(
          `option '${option.flags}' given more than once with different values (${values}): it takes one`,
          commandPathOf(command),
          'its options',
          `give ${option.long ?? option.flags} once, with the value you mean (\`${commandPathOf(command)} --help\` lists its options)`,
        );
      }
      // Each value once: `--sandbox a --sandbox a --sandbox b` names "a" and "b", not "a" twice.
      if (!given.includes(text)) given.push(text);
    });
  }
}
