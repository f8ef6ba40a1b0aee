/**
 * A --state-dir that can never be a directory (a path under a regular file) is refused by every
 * command as attach refuses it: VCNET_STATE_DIR, exit 2. detach answered "not attached" (exit 0, an
 * orchestrator took the teardown for done), list-ifaces "no such sandbox", and gc read it as empty.
 * A state directory that only does not exist yet keeps detach idempotent.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-unusable-state-');

describe('a state directory under a regular file', () => {
  it('is refused with VCNET_STATE_DIR by attach, detach, list-ifaces and gc alike', () => {
    const { pod } = makePod();
    const file = join(stateDirectory(), 'file');
    writeFileSync(file, '');
    const unusable = join(file, 'sandboxes');
    for (const args of [
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--json'],
      ['detach', '--sandbox', 's1', '--json'],
      ['detach', '--sandbox', 's1', '--dry-run', '--json'],
      ['list-ifaces', 's1', '--json'],
      ['gc', '--netns', pod.path, '--dry-run', '--json'],
    ]) {
      const result = vcnet([...args, '--state-dir', unusable]);
      expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain(`cannot use ${unusable} as a state directory: ${file} is not a directory`);
      expect(JSON.parse(result.stdout).error.code).toBe('VCNET_STATE_DIR');
    }
  });

  it('while one that does not exist yet is a detach of a sandbox not attached', () => {
    const missing = join(stateDirectory(), 'not-yet');
    const result = vcnet(['detach', '--sandbox', 's1', '--json', '--state-dir', missing]);
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ sandbox: 's1', found: false });
  });
});
