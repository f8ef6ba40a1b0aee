/**
 * A state directory on a file system mounted read-only (a bind mount made read-only, in a private
 * mount namespace so nothing outside sees it): list-ifaces and list-routes answer from the record
 * (they used to fail opening the lock file: EROFS), and a detach, which must write, is refused with
 * the pod as it was, its plumbing still there for a detach once the directory is writable again.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-ro-');

describe('a state directory on a read-only file system', () => {
  it('list-ifaces and list-routes answer from the record; detach is refused and changes nothing', () => {
    const { pod } = makePod();
    const state = join(stateDirectory(), 'state');
    expect(vcnet(['attach', '--sandbox', 'ro', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const attached = fingerprint(pod);
    const script = `
      set -u
      mount --bind "$STATE" "$STATE" && mount -o remount,bind,ro "$STATE" || exit 90
      node "$CLI" list-ifaces ro --state-dir "$STATE" --json >"$OUT/ifaces.out" 2>"$OUT/ifaces.err"; echo $? >"$OUT/ifaces.rc"
      node "$CLI" list-routes ro --state-dir "$STATE" --json >"$OUT/routes.out" 2>"$OUT/routes.err"; echo $? >"$OUT/routes.rc"
      node "$CLI" detach --sandbox ro --state-dir "$STATE" --json >"$OUT/detach.out" 2>/dev/null; echo $? >"$OUT/detach.rc"
    `;
    const result = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
      encoding: 'utf8',
      env: { ...process.env, STATE: state, CLI, OUT: stateDirectory() },
    });
    expect(result.status, result.stderr).toBe(0);
    const read = (name: string) => spawnSync('cat', [join(stateDirectory(), name)], { encoding: 'utf8' }).stdout.trim();
    expect(read('ifaces.rc'), read('ifaces.err')).toBe('0');
    expect((JSON.parse(read('ifaces.out')) as Array<{ name: string }>).map((entry) => entry.name)).toEqual(['eth0']);
    expect(read('routes.rc'), read('routes.err')).toBe('0');
    expect(JSON.parse(read('routes.out'))).toEqual(
      expect.arrayContaining([expect.objectContaining({ device: 'eth0' })]),
    );
    // Detach must write (its record, its lock): refused before anything in the pod is touched.
    expect(read('detach.rc')).not.toBe('0');
    expect(JSON.parse(read('detach.out')).error.message).toContain('EROFS');
    expect(fingerprint(pod)).toEqual(attached);
    expect(vcnet(['detach', '--sandbox', 'ro', '--state-dir', state]).status).toBe(0);
  });
});
