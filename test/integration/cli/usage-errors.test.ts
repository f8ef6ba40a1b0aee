/**
 * Command lines commander refuses (a missing required option, an unknown option or command, an
 * option without its argument) are bad input like any other: exit 2, one message and a pointer to
 * `--help` instead of the whole help, and the `{"error": {...}}` object with `--json`.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../../src/cli/program.js';
import { vcnet } from '../../helpers/cli.js';

/** Every command's path below `vcnet` with the flags of its required options. */
function commandsWithRequiredOptions(command: Command, path: string[] = []): Array<[string[], string]> {
  const found: Array<[string[], string]> = command.options
    .filter((option) => option.mandatory)
    .map((option) => [path, option.flags]);
  for (const subcommand of command.commands) {
    found.push(...commandsWithRequiredOptions(subcommand, [...path, subcommand.name()]));
  }
  return found;
}

/**
 * Every command's path below `vcnet` that has `flag`, with the arguments it needs besides: a value
 * for each required option and each required argument (stdin, `-`, is empty).
 */
function commandsWithOption(command: Command, flag: string, path: string[] = []): Array<[string[], string[]]> {
  const found: Array<[string[], string[]]> = [];
  if (command.options.some((option) => option.long === flag)) {
    // iptables takes --sandbox or --sandbox-id, neither of them required by commander.
    const required = command.options
      .filter(
        (option) =>
          option.mandatory ||
          (option.long === '--sandbox' &&
            !command.options.some((other) => other.long === '--sandbox-id' && other.mandatory)),
      )
      .flatMap((option) => [option.long!, 's44']);
    const operands = command.registeredArguments
      .filter((argument) => argument.required)
      .map((argument) => (argument.name() === 'file' ? '-' : 's44'));
    found.push([path, [...operands, ...required]]);
  }
  for (const subcommand of command.commands)
    found.push(...commandsWithOption(subcommand, flag, [...path, subcommand.name()]));
  return found;
}

describe('usage errors', () => {
  const cases: Array<[string, string[], RegExp, string]> = [
    ['a missing required option', ['attach', '--netns', '/x'], /required option '--sandbox <id>'/, 'vcnet attach'],
    ['an unknown option', ['attach', '--sandbox', 'a', '--bogus'], /unknown option '--bogus'/, 'vcnet attach'],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/, 'vcnet'],
    ['an unknown subcommand', ['bench', 'frobnicate'], /unknown command 'frobnicate'/, 'vcnet bench'],
    [
      'an option without its argument',
      ['detach', '--sandbox'],
      /option '--sandbox <id>' argument missing/,
      'vcnet detach',
    ],
  ];

  it.each(cases)('%s: exit 2, a short message and where the help is', (_case, args, message, command) => {
    const result = vcnet(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain(`hint: \`${command} --help\` lists`);
    // Not the whole help text.
    expect(result.stderr).not.toContain('Options:');
    expect(result.stderr.trim().split('\n')).toHaveLength(2);
    expect(result.stdout).toBe('');
  });

  it.each(cases)('%s with --json: the error object on stdout', (_case, args, message) => {
    // --json anywhere; before a last option that lacks its argument, which would take it as its value.
    const result = vcnet(
      args.at(-1) === '--sandbox' ? [...args.slice(0, -1), '--json', '--sandbox'] : [...args, '--json'],
    );
    expect(result.status).toBe(2);
    const { error } = JSON.parse(result.stdout) as { error: { code: string; message: string; hint: string } };
    expect(error.code).toBe('VCNET_INVALID_INPUT');
    expect(error.message).toMatch(message);
    expect(error.hint).toMatch(/--help/);
  });

  // kata-runtime's command line with vcnet in front of it: the hint said only where the help is.
  it('kata-network SUBCOMMAND: says the subcommand is a vcnet command of its own, with the line to type', () => {
    const result = vcnet(['kata-network', 'add-iface', 'sb 1', 'iface.json']);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      "vcnet: unknown command 'kata-network'\nhint: kata-runtime's kata-network subcommands are vcnet commands of their own (add-iface, del-iface, list-ifaces, update-routes, list-routes): leave out kata-network, as in `vcnet add-iface 'sb 1' iface.json`\n",
    );
    const json = vcnet(['kata-network', 'list-routes', 'sb1', '--json']);
    expect(json.status).toBe(2);
    expect((JSON.parse(json.stdout) as { error: { hint: string } }).error.hint).toContain(
      'leave out kata-network, as in `vcnet list-routes sb1 --json`',
    );
  });

  // commander checks required options before unknown ones: a misspelt required option was reported as
  // the required one missing, which hides the typo the user made.
  it.each([
    [['detach', '--sandbx', 'a'], '--sandbx', '--sandbox', 'vcnet detach'],
    [['attach', '--sandbx', 'a', '--', '-y'], '--sandbx', '--sandbox', 'vcnet attach'],
    [['scan', '--net', '/proc/self/ns/net'], '--net', '--netns', 'vcnet scan'],
    [['watch', '--debounce', '10', '--sandbox-id', 'a'], '--sandbox-id', '--sandbox', 'vcnet watch'],
  ])('%o: names the misspelt option and the one meant, not a missing one', (args, typo, meant, command) => {
    const result = vcnet(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      `vcnet: unknown option '${typo}'\n(Did you mean ${meant}?)\nhint: \`${command} --help\` lists its options\n`,
    );
    const json = vcnet([...args, '--json']);
    expect(json.status).toBe(2);
    expect((JSON.parse(json.stdout) as { error: { message: string } }).error.message).toContain(
      `unknown option '${typo}'`,
    );
  });

  // What follows `--` is an operand, however it looks, and so is a negative number: the required
  // option is still what is missing (this named '-y' as an unknown option).
  const required = commandsWithRequiredOptions(buildProgram());
  it('finds the commands with required options', () => {
    expect(required.map(([path]) => path.join(' '))).toEqual(
      expect.arrayContaining(['attach', 'configure-guest', 'detach', 'scan', 'watch']),
    );
  });
  it.each(
    required.flatMap(([path, flags]) => [[[...path, '--', '-y'], flags] as const, [[...path, '-5'], flags] as const]),
  )('%o: names the missing %s, not an operand that looks like an option', (args, flags) => {
    const result = vcnet([...args]);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      `vcnet: required option '${flags}' not specified\nhint: \`vcnet ${args[0]} --help\` lists its options\n`,
    );
  });

  // The library names these values `sandbox` and `config`; a user typed the flags.
  it.each([
    [['detach', '--sandbox', 's/1'], '--sandbox', '"s/1"'],
    [['watch', '--sandbox', '../x'], '--sandbox', '"../x"'],
    [['iptables', 'get', '--sandbox-id', 's/1'], '--sandbox-id', '"s/1"'],
    [
      ['attach', '--sandbox', 'sb', '--netns', '/proc/self/ns/net', '--config', '/nonexistent/s33n.toml'],
      '--config',
      '"/nonexistent/s33n.toml"',
    ],
  ])('%o: the refusal names the flag', (args, flag, value) => {
    const result = vcnet(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(`^vcnet: invalid ${flag}: ${value.replace(/[./]/g, '\\$&')} \\(accepted: `),
    );
  });

  // `vcnet list --state-dir ''` said `invalid stateDirectory`, the library's name, not the flag typed.
  // attach is left out: its --netns is checked first (damaged-records.test.ts covers its --state-dir '').
  const withStateDirectory = commandsWithOption(buildProgram(), '--state-dir').filter(([path]) => path[0] !== 'attach');
  it('finds the commands that take --state-dir', () => {
    expect(withStateDirectory.map(([path]) => path.join(' '))).toEqual(
      expect.arrayContaining(['list', 'gc', 'detach', 'watch', 'add-iface', 'iptables get', 'install-cni']),
    );
  });
  it.each(withStateDirectory)("%o: --state-dir '' is refused naming the flag", (path, args) => {
    const scratch = mkdtempSync(join(tmpdir(), 'vcnet-state-dir-'));
    try {
      // install-cni gets directories of its own, should it ever write before it checks.
      const extra =
        path[0] === 'install-cni' ? ['--bin-dir', join(scratch, 'bin'), '--conf-dir', join(scratch, 'conf')] : [];
      const result = vcnet([...path, ...args, ...extra, '--state-dir', '']);
      expect(result.status, result.stderr).toBe(2);
      expect(result.stderr).toMatch(/^vcnet: invalid --state-dir: "" \(accepted: [^\n]*\)\nhint: set --state-dir to /);
      expect(readdirSync(scratch)).toEqual([]);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  // commander kept the last of two values without a word: `attach --netns A --netns B` attached B.
  it.each([
    [['scan', '--netns', '/proc/self/ns/net', '--netns=/proc/1/ns/net'], '--netns <path>', 'vcnet scan'],
    [
      ['attach', '--sandbox', 'sb', '--netns', '/var/run/netns/a', '--netns', '/var/run/netns/b', '--dry-run'],
      '--netns <path>',
      'vcnet attach',
    ],
    [['detach', '--sandbox', 'sb1', '--sandbox', 'sb2'], '--sandbox <id>', 'vcnet detach'],
    [['--log-level', 'info', '--log-level', 'debug', 'list'], '--log-level <level>', 'vcnet'],
  ])('%o: a one-value option given twice with different values is refused, naming both', (args, flags, command) => {
    const result = vcnet(args);
    expect(result.status).toBe(2);
    const long = flags.split(' ')[0];
    expect(result.stderr).toMatch(
      new RegExp(
        `^vcnet: option '${flags}' given more than once with different values \\(".*", then ".*"\\): it takes one\nhint: give ${long} once, with the value you mean \\(\`${command} --help\` lists its options\\)\n$`,
      ),
    );
    expect(result.stdout).toBe('');
    const json = vcnet([...args, '--json']);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: {
        code: 'VCNET_INVALID_INPUT',
        message: expect.stringContaining(`option '${flags}' given more than once`),
      },
    });
  });

  it('names each value given once, however often it was repeated', () => {
    const result = vcnet(['detach', '--sandbox', 'sb1', '--sandbox=sb1', '--sandbox', 'sb2']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(
      `option '--sandbox <id>' given more than once with different values ("sb1", then "sb2"): it takes one`,
    );
  });

  it('takes the same value twice, and the options made to repeat', () => {
    const same = vcnet(['scan', '--netns', '/proc/self/ns/net', '--netns', '/proc/self/ns/net', '--json']);
    expect(same.status, same.stderr).toBe(0);
    // Each refused after parsing, for its value: the repeat itself was taken.
    const interfaces = vcnet(['attach', '--sandbox', 's/1', '--netns', '/x', '--interface', 'a', '--interface', 'b']);
    expect(interfaces.status).toBe(2);
    expect(interfaces.stderr).toMatch(/^vcnet: invalid --sandbox: "s\/1"/);
    const namespaces = vcnet(['gc', '--dry-run', '--netns', 's42-no-such-a', '--netns', 's42-no-such-b']);
    expect(namespaces.status).toBe(2);
    expect(namespaces.stderr).not.toContain('given more than once');
    expect(namespaces.stderr).toContain('s42-no-such-a');
  });

  it('--help and --version still exit 0', () => {
    const help = vcnet(['attach', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage: vcnet attach');
    const version = vcnet(['--version']);
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toBe('0.1.0');
    expect(vcnet(['help', 'detach']).status).toBe(0);
  });
});

/** Every command below `vcnet` that is itself below another one, as the names to type (`bench attach`). */
function nestedCommands(command: Command, path: string[] = []): string[][] {
  const found: string[][] = [];
  for (const subcommand of command.commands) {
    const subcommandPath = [...path, subcommand.name()];
    if (path.length > 0) found.push(subcommandPath);
    found.push(...nestedCommands(subcommand, subcommandPath));
  }
  return found;
}

// commander's own help command followed one name: `vcnet help bench attach` printed bench's help.
describe('vcnet help COMMAND SUBCOMMAND', () => {
  const nested = nestedCommands(buildProgram());
  it('finds the nested commands', () => {
    expect(nested.map((path) => path.join(' '))).toEqual(expect.arrayContaining(['bench attach', 'iptables get']));
  });
  it.each(nested.map((path) => [path.join(' '), path] as const))(
    "vcnet help %s prints the subcommand's help, as its --help does",
    (_names, path) => {
      const help = vcnet(['help', ...path]);
      expect(help.status, help.stderr).toBe(0);
      expect(help.stdout).toContain(`Usage: vcnet ${path.join(' ')} `);
      expect(help.stdout).toBe(vcnet([...path, '--help']).stdout);
    },
  );
  it('an unknown name is refused as `vcnet NAME` is, naming the command it was looked for in', () => {
    const unknown = vcnet(['help', 'bench', 'frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe("vcnet: unknown command 'frobnicate'\nhint: `vcnet bench --help` lists its commands\n");
    const belowLeaf = vcnet(['help', 'attach', 'frobnicate']);
    expect(belowLeaf.status).toBe(2);
    expect(belowLeaf.stderr).toContain('(vcnet attach has no subcommands)');
  });
  // kata-runtime's help command line with vcnet in front of it: the hint said only where the help is.
  it('help kata-network SUBCOMMAND: says the subcommand is a vcnet command of its own, with the help line to type', () => {
    const result = vcnet(['help', 'kata-network', 'add-iface']);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      "vcnet: unknown command 'kata-network'\nhint: kata-runtime's kata-network subcommands are vcnet commands of their own (add-iface, del-iface, list-ifaces, update-routes, list-routes): leave out kata-network, as in `vcnet help add-iface`\n",
    );
  });
});

describe('the global options', () => {
  it.each([
    // Named as the user set it, the value as typed: it said `invalid log level (--log-level,
    // VCNET_LOG_LEVEL): "loud"`, either way, and lowercased the value.
    [
      ['--log-level', 'LOUD', 'scan', '--netns', '/proc/self/ns/net'],
      /^vcnet: invalid --log-level: "LOUD" \(accepted: trace, debug, info, warn, error, fatal, silent\)\nhint: set --log-level to trace, /,
    ],
    [
      ['--log-format', 'xml', 'scan', '--netns', '/proc/self/ns/net'],
      /invalid --log-format: "xml" \(accepted: json, pretty\)/,
    ],
  ])('refuses %o with exit 2 naming the value and what is accepted', (args, message) => {
    const result = vcnet(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('refuses a VCNET_LOG_LEVEL that is no level under its own name', () => {
    const result = vcnet(['list', '--state-dir', '/nonexistent/s44'], { VCNET_LOG_LEVEL: 'Loud' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      /^vcnet: invalid VCNET_LOG_LEVEL: "Loud" \(accepted: trace, debug, info, warn, error, fatal, silent\)\nhint: set VCNET_LOG_LEVEL to trace, /,
    );
    // --log-level wins over it, as the docs say.
    expect(
      vcnet(['--log-level', 'error', 'list', '--state-dir', '/nonexistent/s44'], { VCNET_LOG_LEVEL: 'Loud' }).status,
    ).toBe(0);
  });
});
