/**
 * gc after an attach of many interfaces killed before its first change: each endpoint's record goes,
 * and none made anything. The table said so once per interface (58 rows of "stopped before it made
 * anything" after a 60-interface attach was killed); now one row per sandbox says it, with the
 * count, while --json still lists each item (with its interface and `nothingMade`).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-summary-');

describe('gc after an attach killed before its first change', () => {
  it('says the interfaces it never reached in one row; --json lists each', async () => {
    const { pod } = makePod({ interfaces: 10 });
    const state = join(stateDirectory(), 'state');
    const before = fingerprint(pod);
    expect(await killAtStep(['attach', '--sandbox', 'summary', '--netns', pod.path, '--state-dir', state], 0)).toBe(
      true,
    );
    const gcArgs = ['gc', '--netns', pod.path, '--state-dir', state];

    const planned = vcnet([...gcArgs, '--dry-run', '--json']);
    expect(planned.status, planned.stderr).toBe(0);
    const items = (JSON.parse(planned.stdout) as { removed: Array<{ interface?: string; nothingMade?: boolean }> })
      .removed;
    expect(items).toHaveLength(10);
    expect(items.map((item) => item.interface).sort()).toEqual(
      Array.from({ length: 10 }, (_, index) => `eth${index}`).sort(),
    );
    expect(items.every((item) => item.nothingMade === true)).toBe(true);

    const collected = vcnet(gcArgs);
    expect(collected.status, collected.stderr).toBe(0);
    expect(collected.stdout).toMatch(/^removed 10 item\(s\):/);
    const rows = collected.stdout.split('\n').filter((line) => line.includes('stopped before it made anything'));
    expect(rows, collected.stdout).toHaveLength(1);
    expect(rows[0]).toContain(
      'unfinished attach of 10 interfaces (eth0, eth1, eth2, eth3, eth4, eth5, eth6, eth7 and 2 more), stopped before it made anything for them',
    );
    expect(existsSync(join(state, 'summary'))).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);
});
