/**
 * What a user is told when a sandbox has no record where vcnet looked: the ways it came to be, each
 * with what to do: a misspelt id (`vcnet list` shows the recorded ones), another state directory
 * (--state-dir or VCNET_STATE_DIR), or no attach yet (the attach command, in this state directory).
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_STATE_DIRECTORY } from '../../../src/network/state/default-directories.js';
import { SandboxNotFoundError } from '../../../src/sandbox/sandbox-interfaces.js';

describe('SandboxNotFoundError', () => {
  it('says where it looked and, in its hint, how to find the sandbox or attach it', () => {
    const error = new SandboxNotFoundError('sb1', '/tmp/states/sb1/state.json', '/tmp/states');
    expect(error.code).toBe('VCNET_SANDBOX_NOT_FOUND');
    expect(error.value).toBe('sb1');
    expect(error.message).toContain('/tmp/states/sb1/state.json');
    const hint = error.hint ?? '';
    expect(hint).toContain('spelling');
    expect(hint).toContain('`vcnet list`');
    expect(hint).toContain('--state-dir');
    expect(hint).toContain('VCNET_STATE_DIR');
    expect(hint).toContain('`vcnet attach --sandbox sb1 --netns PATH --state-dir /tmp/states`');
  });

  it('names no --state-dir in the attach command for the default state directory', () => {
    const error = new SandboxNotFoundError('sb1', `${DEFAULT_STATE_DIRECTORY}/sb1/state.json`);
    expect(error.hint).toContain('`vcnet attach --sandbox sb1 --netns PATH`');
  });
});
