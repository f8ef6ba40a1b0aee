/** Pretty logs are coloured only on a terminal that wants colours (no-color.org, TERM=dumb). */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { colorWanted } from '../../../src/cli/observability/logger.js';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';

stateDirectoryPerTest('vcnet-color-');

describe('log colours', () => {
  it('only on a TTY, not with NO_COLOR set to something, not with TERM=dumb', () => {
    expect(colorWanted({ TERM: 'xterm' }, true)).toBe(true);
    expect(colorWanted({ TERM: 'xterm', NO_COLOR: '' }, true)).toBe(true);
    expect(colorWanted({ TERM: 'xterm', NO_COLOR: '1' }, true)).toBe(false);
    expect(colorWanted({ TERM: 'dumb' }, true)).toBe(false);
    expect(colorWanted({ TERM: 'xterm' }, false)).toBe(false);
  });

  it('--log-format pretty into a pipe writes no escape sequences', () => {
    const namespace = makeNamespace('color');
    // scan logs its netlink batches at debug level.
    const result = spawnSync(
      process.execPath,
      [CLI, '--log-format', 'pretty', '--log-level', 'debug', 'scan', '--netns', namespace.path],
      { encoding: 'utf8', env: { ...process.env, TERM: 'xterm-256color' } },
    );
    expect(result.stderr).toContain('DEBUG');
    expect(result.stderr.length).toBeGreaterThan(0);
    expect(result.stderr).not.toContain('\u001b[');
  });
});
