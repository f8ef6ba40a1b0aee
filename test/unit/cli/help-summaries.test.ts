/**
 * `vcnet --help` lists one short line per command, and a command's own --help puts its usage and
 * options before its long details (they once came first: `vcnet watch --help` opened with 7,000
 * characters of prose, and `vcnet --help` gave each command its whole description).
 */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commandDetails, wrapParagraph } from '../../../src/cli/help-details.js';
import { buildProgram } from '../../../src/cli/program.js';

/** The help commander would print, captured instead of written. */
function helpOf(command: Command): string {
  let text = '';
  command.configureOutput({ writeOut: (chunk) => (text += chunk) });
  command.outputHelp();
  return text;
}

describe('command help', () => {
  const program = buildProgram();

  it.each(program.commands.map((command) => [command.name(), command] as const))(
    '%s is listed by a one-line summary',
    (_name, command) => {
      const listed = command.summary() || command.description();
      expect(listed.length, listed).toBeLessThanOrEqual(100);
      expect(listed).not.toContain('\n');
    },
  );

  it('vcnet --help fits every command on one line', () => {
    const commands = helpOf(program).split('Commands:\n')[1] ?? '';
    const lines = commands.split('\n').filter((line) => line.trim() !== '');
    // `help` among them: vcnet's own (usage.ts addHelpCommand), not commander's, which is not in `commands`.
    expect(lines.length).toBe(program.commands.length);
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(150);
  });

  it.each(['watch', 'gc', 'add-iface', 'del-iface', 'detach'])(
    'vcnet %s --help: usage and options first, then the details, each word of them kept',
    (name) => {
      const command = program.commands.find((candidate) => candidate.name() === name);
      if (!command) throw new Error(`no ${name} command`);
      const details = commandDetails(command);
      expect(details.length).toBeGreaterThan(0);
      const help = helpOf(command);
      const options = help.indexOf('Options:');
      const detailsAt = help.indexOf('Details:');
      expect(options).toBeGreaterThan(0);
      expect(detailsAt).toBeGreaterThan(options);
      expect(help.slice(0, options).length).toBeLessThan(600);
      const words = (text: string) => text.split(/\s+/).filter((word) => word !== '');
      expect(words(help.slice(detailsAt + 'Details:'.length))).toEqual(details.flatMap(words));
    },
  );
});

describe('option help', () => {
  // attach's --help listed what --model, --queues and --vhost-net accept but not what they are when left out.
  it.each([
    ['--model', /default: --config's internetworking_model, else tcfilter/],
    ['--queues', /default: from --config \(default_vcpus, or runtime-rs's network_queues\), else 1/],
    ['--vhost-net', /default: --config's disable_vhost_net, else auto/],
  ])('vcnet attach --help says what %s is when it is left out', (flag, said) => {
    const attach = buildProgram().commands.find((command) => command.name() === 'attach');
    const option = attach?.options.find((candidate) => candidate.long === flag);
    expect(option?.description).toMatch(said);
  });
});

describe('wrapParagraph', () => {
  it('breaks at spaces within the width and keeps a longer word whole', () => {
    expect(wrapParagraph('aa bb cc dd', 5)).toEqual(['aa bb', 'cc dd']);
    expect(wrapParagraph('a /var/run/netns/some-long-name b', 10)).toEqual(['a', '/var/run/netns/some-long-name', 'b']);
    expect(wrapParagraph('  ', 10)).toEqual([]);
  });
});
