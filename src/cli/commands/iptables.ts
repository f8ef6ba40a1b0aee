/**
 * `vcnet iptables get|set`, as `kata-runtime iptables get|set --sandbox-id ID [--v6] [FILE]`: the guest's
 * packet filter rules through the agent the sandbox's record names (GetIPTables / SetIPTables). The
 * rules are iptables-save text, printed and read as they are (bytes, no JSON); anything for a person
 * goes to stderr.
 */
import { Command, Option } from 'commander';
import { decimalInteger } from '../../arguments.js';
import { InvalidInputError } from '../../errors.js';
import { stateDirectory } from '../../network/state/store.js';
import { importForCommand } from '../lazy-import.js';
import { readSource } from '../read-source.js';
import { inCliWords } from './kata-network.js';
import { bindRecordNamespace } from './record-namespace.js';

/** ttrpc frames carry at most 4 MiB, the request wrapping included. */
const MAX_RULES_BYTES = (4 << 20) - 4096;
const DEFAULT_TIMEOUT_MS = 30_000;

interface IpTablesFlags {
  sandbox?: string;
  sandboxId?: string;
  v6?: boolean;
  stateDir?: string;
  timeout: string;
}

/** The sandbox id: --sandbox, or Kata's spelling --sandbox-id; one of them, and the same when both. */
export function sandboxOf(flags: Pick<IpTablesFlags, 'sandbox' | 'sandboxId'>): string {
  const { sandbox, sandboxId } = flags;
  if (sandbox !== undefined && sandboxId !== undefined && sandbox !== sandboxId) {
    throw new InvalidInputError(
      '--sandbox-id',
      sandboxId,
      `the same id as --sandbox (${sandbox}), or only one of them`,
    );
  }
  const id = sandbox ?? sandboxId;
  if (id === undefined || id === '') {
    throw new InvalidInputError(
      '--sandbox',
      id,
      'a sandbox id (--sandbox ID, or --sandbox-id ID as kata-runtime takes it)',
    );
  }
  return id;
}

/** set's input: FILE, or - (or nothing) for standard input, which must not be a terminal nobody types rules into. */
export function readRules(file: string | undefined, stdinIsTerminal: boolean): Buffer {
  const source = file ?? '-';
  if (source === '-' && stdinIsTerminal) {
    throw new InvalidInputError(
      'FILE',
      file,
      'an iptables-save file, or - with the rules piped in',
      'standard input is a terminal: give the file (vcnet iptables set --sandbox ID FILE), or pipe the rules in (iptables-save | vcnet iptables set --sandbox ID -)',
    );
  }
  return readSource(source, {
    maxBytes: MAX_RULES_BYTES,
    what: 'iptables-save file',
    tooLarge: 'the rules travel in one agent message, which carries at most 4 MiB',
  });
}

function subcommand(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .option('--sandbox <id>', 'sandbox id')
    .addOption(new Option('--sandbox-id <id>', "kata-runtime's spelling of --sandbox"))
    .option('--v6', 'the IPv6 tables (ip6tables-save / ip6tables-restore)')
    .option('--state-dir <dir>', 'where sandbox state lives')
    .option(
      '--timeout <ms>',
      "how long to wait for the VM's agent, connecting and answering",
      String(DEFAULT_TIMEOUT_MS),
    )
    .option(
      '--json',
      'on failure, also print the error as one JSON object on stdout (`{"error":{"code":...}}`, as the other commands do); the rules themselves are printed as they are',
    );
}

/** The library's options from the flags, the sandbox's namespace bound to the log lines. */
function libraryOptions(flags: IpTablesFlags): {
  id: string;
  options: { v6: boolean; stateDirectory: string; timeoutMs: number };
} {
  const id = sandboxOf(flags);
  const timeoutMs = decimalInteger('--timeout', flags.timeout, 1, 3_600_000, 'milliseconds from 1 to 3600000');
  const directory = stateDirectory(flags.stateDir);
  bindRecordNamespace(id, directory);
  return { id, options: { v6: flags.v6 === true, stateDirectory: directory, timeoutMs } };
}

/** Loaded in the action: it brings the agent's protobuf code, which most commands never use. */
const iptablesLibrary = async () => ({
  ...(await import('../../sandbox/sandbox-iptables.js')),
  AgentNotRecordedError: (await import('../../sandbox/sandbox-interfaces.js')).AgentNotRecordedError,
});

export function registerIpTables(program: Command): void {
  const iptables = new Command('iptables')
    .summary("the guest's packet filter rules, through its agent (kata-runtime iptables)")
    .description(
      "the guest's packet filter rules, through the agent the sandbox's record names (kata-runtime iptables): iptables-save / iptables-restore run in the guest",
    );
  iptables.addCommand(
    subcommand('get', "print the guest's rules as iptables-save (ip6tables-save with --v6) prints them").action(
      async (flags: IpTablesFlags) => {
        const { id, options } = libraryOptions(flags);
        const { getIpTables, AgentNotRecordedError } = await importForCommand('`vcnet iptables`', iptablesLibrary);
        process.stdout.write(await getIpTables(id, options).catch(inCliWords({ AgentNotRecordedError })));
      },
    ),
  );
  iptables.addCommand(
    subcommand(
      'set',
      "replace the guest's tables the rules name: iptables-restore (ip6tables-restore with --v6) in the guest reads them; prints what it printed (usually nothing)",
    )
      .argument('[file]', 'iptables-save text; - or nothing for standard input')
      .action(async (file: string | undefined, flags: IpTablesFlags) => {
        const { id, options } = libraryOptions(flags);
        const rules = readRules(file, process.stdin.isTTY === true);
        const { setIpTables, AgentNotRecordedError } = await importForCommand('`vcnet iptables`', iptablesLibrary);
        process.stdout.write(await setIpTables(id, rules, options).catch(inCliWords({ AgentNotRecordedError })));
      }),
  );
  program.addCommand(iptables);
}
