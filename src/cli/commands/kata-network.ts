/**
 * Kata 1.x's `kata-runtime kata-network` commands (removed in Kata 2.0): add-iface, del-iface,
 * list-ifaces, update-routes, list-routes. They read and print Kata's JSON (the agent's Interface and
 * Route objects): the result goes to stdout as one JSON line, as Kata's JSON encoder wrote it;
 * anything for a person to stderr.
 */

import type { Command } from 'commander';
import { MAX_KATA_JSON_BYTES } from '../../agent/kata-json-limits.js';
import { decimalInteger } from '../../arguments.js';
import { InvalidInputError } from '../../errors.js';
import { stateDirectory } from '../../network/state/store.js';
// The value alone: a type-free module, so the agent's protobuf code still loads only when a command runs.
import { LIST_AGENT_TIMEOUT_MS } from '../../sandbox/list-timeout.js';
import type { AgentNotRecordedError, KataNetworkOptions, ListOptions } from '../../sandbox/sandbox-interfaces.js';
import { describeCommand } from '../help-details.js';
import { importForCommand } from '../lazy-import.js';
import { JSON_ERRORS_OPTION } from '../options.js';
import { print, routeDestination, table, writeStderr } from '../output.js';
import { readSource } from '../read-source.js';
import { bindRecordNamespace } from './record-namespace.js';

/**
 * The sandbox's kata-network operations, loaded when one of these commands runs: they bring the
 * agent's protobuf code, which every other command would otherwise load at start for nothing.
 */
/** The library's refusal of a sandbox with no agent recorded, its hint in the CLI's words (its commands and flags). */
export function inCliWords(library: { AgentNotRecordedError: typeof AgentNotRecordedError }) {
  return (error: unknown): never => {
    throw error instanceof library.AgentNotRecordedError ? error.inCliWords() : error;
  };
}

const sandboxInterfaces = () =>
  importForCommand(
    'the kata-network commands (add-iface, list-ifaces...)',
    () => import('../../sandbox/sandbox-interfaces.js'),
  );

/** A file path, or - for standard input, read up to MAX_KATA_JSON_BYTES (see readSource). */
function readInput(source: string): string {
  const text = readSource(source, {
    maxBytes: MAX_KATA_JSON_BYTES,
    what: 'JSON file',
    tooLarge: 'kata-network input is one Interface or a list of routes: a few kilobytes',
  }).toString('utf8');
  // Said as such: JSON.parse's "Unexpected end of JSON input" does not tell that nothing came.
  if (text.trim() === '') {
    throw new InvalidInputError(
      'FILE',
      source,
      'a JSON document, or - for standard input',
      source === '-'
        ? 'standard input was empty (closed, or its writer wrote nothing): pipe the JSON in, or give a file'
        : `${source} is empty: write the JSON into it`,
    );
  }
  return text;
}

/** One stderr line naming every key ignored (Go ignores them too), each once, so a typo is still seen. */
function warnIgnoredKeys(paths: string[], noteOf: (path: string) => string | undefined): void {
  const named = paths.map((path) => {
    const note = noteOf(path);
    return note === undefined ? path : `${path} (${note})`;
  });
  writeStderr(`vcnet: warning: ignored keys: ${named.join(', ')}\n`);
}

/** The list commands answer what the record says when the VM's agent does not answer: one stderr line says so. */
function noteRecordedView(error: Error): void {
  writeStderr(
    `vcnet: the VM did not answer (${error.message}): showing the recorded view (--timeout waits longer for its agent)\n`,
  );
}

const liveOption = [
  '--live',
  "only what the VM's agent answers: fail instead of showing the recorded view (exit 1, --json as every command's): with the agent's error when it does not answer, with VCNET_AGENT_CONNECT when the sandbox was attached without --agent",
] as const;

const listTimeoutOption = [
  '--timeout <ms>',
  "how long to wait for the VM's agent (connecting and answering) before showing the recorded view",
  String(LIST_AGENT_TIMEOUT_MS),
] as const;

/** --timeout of the list commands, in milliseconds. */
function listTimeout(value: string): number {
  return decimalInteger('--timeout', value, 1, 3_600_000, 'milliseconds from 1 to 3600000');
}

/** Kata's output: the result as one JSON line. */
function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

const stateOption = ['--state-dir <dir>', 'where sandbox state lives'] as const;

export function registerKataNetwork(program: Command): void {
  registerRequestCommand(program, {
    name: 'add-iface',
    summary: 'add an interface to a sandbox, hot-plugged into its VM when it runs',
    description: 'add an interface to a sandbox (hot-plugs it and configures the guest when the VM runs)',
    details: [
      "Without IPAddresses (left out or []) the guest NIC gets the pod link's addresses; IPAddresses given are the guest NIC's instead, the pod link keeps its own. hwAddr must be the pod link's MAC (or left out), and mtu at most the pod link's MTU (the host tap carries that; with type \"tap\" the tap vcnet makes takes mtu).",
      'When the VM turns out gone part-way (killed: its QMP or API socket is not there, or nobody listens on it, also once a connection closed mid-command), the interface is undone on the host side and the error (exit 1) says the VM is gone; a VM alive but silent leaves what the error names.',
    ],
    file: 'Interface JSON (name, IPAddresses, mtu, hwAddr, type...; keys in any case), or - for stdin',
    run: async (sandbox, text, options) => {
      const result = await (await sandboxInterfaces()).addInterface(sandbox, text, options);
      if (result.deviceIgnored !== undefined)
        writeStderr(
          `vcnet: device ${JSON.stringify(result.deviceIgnored)} is no link of the pod namespace: made the interface from ${result.podDevice}, its name (Kata reads only name)\n`,
        );
      if (result.inferredType)
        writeStderr(`vcnet: no type given: using "${result.inferredType}", the kind of device ${result.podDevice}\n`);
      if (result.typeOverridden !== undefined)
        writeStderr(
          `vcnet: ${result.podDevice} has a vhost-user socket: made a "vhost-user" endpoint, not "${result.typeOverridden}" (Kata looks for the socket before it reads type)\n`,
        );
      return result.interface;
    },
  });

  registerRequestCommand(program, {
    name: 'del-iface',
    summary: 'remove an interface from a sandbox, unplugged from its VM when it runs',
    description: 'remove an interface from a sandbox (unplugs it from the VM when it runs)',
    details: [
      'A VM that is gone (its QMP or API socket is not there, or nobody listens on it; also when that shows only after the connection closed mid-unplug) holds no NIC: the interface is removed on the host side only and the record updated, with a warning that says so (exit 0).',
      'A VM that answers but does not release the NIC, or does not answer in time, keeps it: exit 1, the error names what is left.',
    ],
    file: 'Interface JSON naming it by name, device or hwAddr, or - for stdin',
    run: async (sandbox, text, options) => (await sandboxInterfaces()).removeInterface(sandbox, text, options),
  });

  registerListCommand(program, {
    name: 'list-ifaces',
    summary: 'the interfaces the guest has (from its agent) or will have',
    description: 'the interfaces the guest has (from its agent) or will have',
    fetch: async (sandbox, options) => {
      const library = await sandboxInterfaces();
      return library.listInterfaces(sandbox, options).catch(inCliWords(library));
    },
    columns: [
      ['NAME', (entry) => entry.name],
      ['DEVICE', (entry) => entry.device || '-'],
      ['TYPE', (entry) => entry.type || '-'],
      ['MAC', (entry) => entry.hwAddr],
      ['MTU', (entry) => String(entry.mtu)],
      [
        'ADDRESSES',
        (entry) => entry.IPAddresses.map((address) => `${address.address}/${address.mask}`).join(',') || '-',
      ],
      ['PCI', (entry) => entry.devicePath || '-'],
    ],
  });

  registerRequestCommand(program, {
    name: 'update-routes',
    summary: "replace the guest's routes with a full set, as Kata's agent does",
    description: "replace the guest's routes with this full set, as Kata's agent does (kernel and lo routes stay)",
    file: 'Route JSON array (dest, gateway, device, source, scope, family, flags, mtu; null changes nothing), or - for stdin',
    run: async (sandbox, text, options) => {
      const routes = await (await sandboxInterfaces()).updateRoutes(sandbox, text, options);
      // Printed as kata-runtime prints its nil result; said, since [] and null read alike at a glance.
      if (routes === null)
        writeStderr(
          'vcnet: routes are null: nothing changed (Kata sends no request for a null list); [] removes every route\n',
        );
      return routes;
    },
  });

  registerListCommand(program, {
    name: 'list-routes',
    summary: 'the routes the guest has (from its agent) or will have',
    description: 'the routes the guest has (from its agent) or will have',
    fetch: async (sandbox, options) => {
      const library = await sandboxInterfaces();
      return library.listRoutes(sandbox, options).catch(inCliWords(library));
    },
    columns: [
      ['DEST', (route) => routeDestination(route.dest)],
      ['GATEWAY', (route) => route.gateway || '-'],
      ['DEVICE', (route) => route.device],
      ['SOURCE', (route) => route.source || '-'],
      ['SCOPE', (route) => String(route.scope)],
      ['MTU', (route) => (route.mtu ? String(route.mtu) : '-')],
    ],
  });
}

/** A command that changes the sandbox as a JSON request (a file or stdin) says and prints the result as Kata's one JSON line. */
interface RequestCommand {
  name: string;
  /** The one line `vcnet --help` lists it by. */
  summary: string;
  description: string;
  /** Paragraphs `--help` prints after the options. */
  details?: string[];
  /** What the <file> argument holds. */
  file: string;
  /** Carries out the request; what it returns is printed. */
  run: (sandbox: string, text: string, options: KataNetworkOptions) => Promise<unknown>;
}

function registerRequestCommand(program: Command, request: RequestCommand): void {
  describeCommand(program.command(request.name), request)
    .argument('<sandbox>', 'sandbox id')
    .argument('<file>', request.file)
    .option(...stateOption)
    .option(...JSON_ERRORS_OPTION)
    .action(async (sandbox: string, file: string, options: { stateDir?: string }) => {
      bindRecordNamespace(sandbox, stateDirectory(options.stateDir));
      // Loaded here, not at the top: it brings the agent's protobuf code, which only these commands need.
      const { kataIgnoredKeyNote } = await importForCommand(
        `vcnet ${request.name}`,
        () => import('../../agent/kata-network-json.js'),
      );
      printJsonLine(
        await request.run(sandbox, readInput(file), {
          stateDirectory: stateDirectory(options.stateDir),
          onIgnoredKeys: (paths) => warnIgnoredKeys(paths, kataIgnoredKeyNote),
        }),
      );
    });
}

/** A command that lists what the guest has: from its agent, or the recorded view when the agent does not answer. */
interface ListCommand<Entry> {
  name: string;
  /** The one line `vcnet --help` lists it by. */
  summary: string;
  description: string;
  fetch: (sandbox: string, options: ListOptions) => Promise<Entry[]>;
  /** The table's columns (--json prints the entries as Kata's JSON instead): a header and its cell. */
  columns: Array<[header: string, cell: (entry: Entry) => string]>;
}

function registerListCommand<Entry>(program: Command, list: ListCommand<Entry>): void {
  describeCommand(program.command(list.name), list)
    .argument('<sandbox>', 'sandbox id')
    .option(...stateOption)
    .option(...listTimeoutOption)
    .option(...liveOption)
    .option('--json', 'Kata JSON instead of a table')
    .action(
      async (sandbox: string, options: { stateDir?: string; timeout: string; json?: boolean; live?: boolean }) => {
        const entries = await list.fetch(sandbox, {
          stateDirectory: stateDirectory(options.stateDir),
          timeoutMs: listTimeout(options.timeout),
          // --live: no agent recorded, or one that does not answer, fails the command (its error).
          live: options.live === true,
          onAgentUnreachable: noteRecordedView,
        });
        // Kata's kata-network prints each result as one JSON line.
        if (options.json) return printJsonLine(entries);
        print(
          table(
            list.columns.map(([header]) => header),
            entries.map((entry) => list.columns.map(([, cell]) => cell(entry))),
          ),
        );
      },
    );
}
