/**
 * Table text for people: a default route reads "default" whichever way its `dest` is spelled, and a
 * pod link's name cannot send escape codes to the operator's terminal.
 */
import { describe, expect, it } from 'vitest';
import { routeDestination, table } from '../../../src/cli/output.js';
import {
  escapedControlCharacters,
  escapedControlCharactersInMessage,
  terminalLines,
} from '../../../src/terminal-text.js';

describe('routeDestination', () => {
  it('shows a default route as "default" in each spelling (Kata 1.x "", current Kata 0.0.0.0/0 and ::/0)', () => {
    expect(['', '0.0.0.0/0', '::/0'].map(routeDestination)).toEqual(['default', 'default', 'default']);
  });

  it('shows any other destination as it is', () => {
    expect(['10.0.0.0/8', 'fd00::/64', '0.0.0.0/1'].map(routeDestination)).toEqual([
      '10.0.0.0/8',
      'fd00::/64',
      '0.0.0.0/1',
    ]);
  });
});

describe('table', () => {
  it("shows a link name's control characters as escapes, and aligns on what it shows", () => {
    const shown = table(
      ['NAME', 'KIND'],
      [
        ['e\x1b[31mRED\x07', 'veth'],
        ['c\x9b2J', 'tun'],
        ['eth0', 'veth'],
      ],
    );
    expect(shown).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    expect(shown.split('\n')).toEqual([
      'NAME              KIND',
      'e\\x1b[31mRED\\x07  veth',
      'c\\x9b2J           tun',
      'eth0              veth',
    ]);
  });

  it('escapes a message once: a JSON-quoted value keeps its own escapes, a raw control character is escaped', () => {
    // The message of a refused kata-network file `{name` + newline: the value is JSON-quoted already.
    const message = `vcnet: invalid interface: ${JSON.stringify('{name\n')} (accepted: valid JSON)`;
    expect(terminalLines(message)).toBe('vcnet: invalid interface: "{name\\n" (accepted: valid JSON)');
    expect(terminalLines('a\\b \x9b2J \u2028')).toBe('a\\b \\x9b2J \\u2028');
    // A bare value (a table cell, a dry-run comment) still escapes its backslash, so an escape reads as one.
    expect(escapedControlCharacters('a\\n\n')).toBe('a\\\\n\\n');
    expect(escapedControlCharactersInMessage('a\\n\n')).toBe('a\\n\\n');
  });

  it('keeps the newlines of a message, escaping the rest line by line', () => {
    expect(terminalLines('vcnet: bad\x1b]0;title\x07 name\nhint: x\n')).toBe(
      'vcnet: bad\\x1b]0;title\\x07 name\nhint: x\n',
    );
  });
});
