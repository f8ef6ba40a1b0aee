/**
 * What `vcnet gc --json` says when it left a sandbox's unfinished attach as it was because its VMM
 * did not answer in its wait (QEMU's QMP held by another client, Cloud Hypervisor silent): the gc
 * tests of both share it.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import type { CliResult } from '../../helpers/cli.js';

/**
 * Checks that `collected` (gc --json) changed nothing, failed nothing, and kept the record of
 * `sandbox` in `directory` for its next run (in `skipped` with `beingChanged`, and said on stderr);
 * returns the reason it gave, for the caller's checks of what it says of the VMM.
 */
export function expectUnfinishedLeftForNextGc(collected: CliResult, directory: string, sandbox: string): string {
  // Nothing was changed, nothing failed: the record waits for gc's next run.
  expect(collected.status, collected.stderr).toBe(0);
  const report = JSON.parse(collected.stdout) as {
    removed: unknown[];
    failures: unknown[];
    skipped: Array<{ file: string; reason: string; beingChanged?: boolean }>;
  };
  expect(report.removed).toEqual([]);
  expect(report.failures).toEqual([]);
  const statePath = join(directory, sandbox, 'state.json');
  expect(report.skipped).toEqual([
    {
      file: statePath,
      reason: expect.stringContaining(`the unfinished attach of sandbox ${sandbox} was left as it is`),
      beingChanged: true,
    },
  ]);
  expect(collected.stderr).toContain(`vcnet: gc kept the record ${statePath}`);
  return report.skipped[0]!.reason;
}
