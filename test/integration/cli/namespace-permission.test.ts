/**
 * A namespace vcnet may not enter: the error names the path the user gave (never the fd vcnet opened
 * it through), and the hint fits who ran it: "run it as root" for a user, something else for a root
 * that was refused anyway.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';

stateDirectoryPerTest('vcnet-perm-');

/** `vcnet ARGS` as user nobody (uid and gid 65534, no groups). */
function vcnetAsNobody(args: string[]) {
  const result = spawnSync(
    'setpriv',
    ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, CLI, ...args],
    { encoding: 'utf8' },
  );
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr, error: result.error };
}

describe('a namespace vcnet may not enter', () => {
  it("as a user: names the user's --netns path and says to run as root", () => {
    const namespace = makeNamespace('perm');
    for (const args of [
      ['scan', '--netns', namespace.path],
      ['attach', '--dry-run', '--sandbox', 'p', '--netns', namespace.path],
    ]) {
      const result = vcnetAsNobody(args);
      expect(result.error).toBeUndefined();
      expect(result.status, result.stderr).not.toBe(0);
      expect(result.stderr).toContain(`network namespace ${namespace.path} failed`);
      expect(result.stderr).not.toContain('/proc/self/fd');
      expect(result.stderr).toContain('run it as root');
    }
  });

  it('as root refused (EACCES): the hint does not say to run as root', (context) => {
    // /proc/1/ns/net is refused to root only where root is confined (this test's container); elsewhere
    // there is no refusal to look at.
    try {
      statSync('/proc/1/ns/net');
      console.log('skipping: root may stat /proc/1/ns/net here, so there is no refusal to check the hint of');
      context.skip();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EACCES') throw error;
    }
    const result = vcnet(['scan', '--netns', '/proc/1/ns/net']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('/proc/1/ns/net');
    expect(result.stderr).toContain('vcnet runs as root and was still refused');
    expect(result.stderr).not.toContain('run it as root');
  });
});
