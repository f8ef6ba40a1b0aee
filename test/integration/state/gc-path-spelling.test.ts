/**
 * `vcnet gc --netns PATH` for a namespace that is gone, when the record spells its path another
 * way: containerd records /var/run/netns/cni-…, a user types /run/netns/cni-… (/var/run is a link to
 * /run on Debian and most distributions). With the namespace gone there is no device and inode left
 * to compare, so only the path can tie the record to what the user named: gc said "no namespace is
 * at this path and no record names it" and kept the record.
 */
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-path-spelling-');

function varRunIsRun(): boolean {
  try {
    return lstatSync('/var/run').isSymbolicLink() && realpathSync('/var/run') === '/run';
  } catch {
    return false;
  }
}
const skipReason = varRunIsRun() ? undefined : '/var/run is not a link to /run on this machine';
if (skipReason) console.log(`skipped gc-path-spelling: ${skipReason}`);

describe.skipIf(skipReason !== undefined)('gc --netns, the path spelled through /var/run or /run', () => {
  for (const [recorded, typed] of [
    ['/var/run/netns', '/run/netns'],
    ['/run/netns', '/var/run/netns'],
  ] as const) {
    it(`drops a record of ${recorded}/NAME once its namespace is gone, named as ${typed}/NAME`, () => {
      const { pod } = makePod();
      const name = basename(pod.path);
      const state = stateDirectory();
      const attached = vcnet(['attach', '--sandbox', 's', '--netns', join(recorded, name), '--state-dir', state]);
      expect(attached.status, attached.stderr).toBe(0);
      pod.delete();
      const collected = vcnet(['gc', '--netns', join(typed, name), '--state-dir', state, '--json']);
      expect(collected.status, collected.stderr).toBe(0);
      const report = JSON.parse(collected.stdout) as {
        removed: Array<{ kind: string; name: string }>;
        absent: unknown[];
      };
      expect(report.removed.map((item) => `${item.kind} ${item.name}`)).toEqual(['state s']);
      expect(report.absent).toEqual([]);
      expect(existsSync(join(state, 's', 'state.json'))).toBe(false);
    });
  }

  it('still keeps the record of another namespace of the same name in another directory', () => {
    const { pod } = makePod();
    const state = stateDirectory();
    expect(vcnet(['attach', '--sandbox', 's', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    pod.delete();
    const elsewhere = join(state, basename(pod.path));
    const collected = vcnet(['gc', '--netns', elsewhere, '--state-dir', state, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    expect(JSON.parse(collected.stdout).removed).toEqual([]);
    expect(existsSync(join(state, 's', 'state.json'))).toBe(true);
  });
});
