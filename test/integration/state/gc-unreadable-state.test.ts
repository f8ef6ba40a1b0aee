/**
 * A state directory gc cannot list, or a record it cannot read (EIO from a failing disk, EMFILE,
 * ENOMEM), is not "no records": gc used to read it as empty, and with --netns took a live sandbox's
 * tap, redirect filters and ingress qdisc for orphans. Now such a directory or record is named in
 * `skipped` and gc removes nothing in any namespace that run. The faults are injected with strace
 * into exactly that directory's or file's system calls.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { runUnderStrace, straceFaultsSkipReason } from '../../helpers/strace.js';

const stateDirectory = stateDirectoryPerTest('vcnet-gc-unreadable-');
const skipReason = straceFaultsSkipReason('gc fault tests');

interface Report {
  removed: Array<{ kind: string; name: string }>;
  skipped: Array<{ file: string; reason: string }>;
}

/** gc under strace, `syscall` on `path` answered EIO the `when`-th time. */
function gcWithFault(path: string, syscall: string, when: number, args: string[]) {
  return runUnderStrace(
    ['-P', path, '-e', `trace=${syscall}`, '-e', `inject=${syscall}:error=EIO:when=${when}`],
    [process.execPath, CLI, 'gc', ...args],
  );
}

describe.skipIf(skipReason)('gc and state it cannot read (strace fault injection)', () => {
  const cases: Array<{ what: string; target: (state: string) => string; syscall: string; when: number }> = [
    { what: 'the state directory cannot be opened', target: (state) => state, syscall: 'openat', when: 1 },
    { what: 'the state directory cannot be listed', target: (state) => state, syscall: 'getdents64', when: 1 },
    {
      what: 'the record cannot be opened',
      target: (state) => join(state, 'live', 'state.json'),
      syscall: 'openat',
      when: 1,
    },
    {
      what: 'the record cannot be read',
      target: (state) => join(state, 'live', 'state.json'),
      syscall: 'read',
      when: 1,
    },
  ];
  for (const { what, target, syscall, when } of cases) {
    it(`${what} (EIO): gc --netns names it in skipped and leaves the live sandbox's plumbing`, () => {
      const { pod } = makePod();
      const state = join(stateDirectory(), 'state');
      const attached = vcnet(['attach', '--sandbox', 'live', '--netns', pod.path, '--state-dir', state]);
      expect(attached.status, attached.stderr).toBe(0);
      const before = fingerprint(pod);

      const result = gcWithFault(target(state), syscall, when, ['--netns', pod.path, '--state-dir', state, '--json']);
      expect(result.status, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as Report;
      expect(report.removed).toEqual([]);
      expect(report.skipped).toContainEqual({ file: target(state), reason: expect.stringContaining('EIO') });
      expect(report.skipped.find((entry) => entry.file === target(state))?.reason).toContain(
        'gc removes no link, filter or qdisc in any namespace this run',
      );
      expect(fingerprint(pod)).toEqual(before);

      const detached = vcnet(['detach', '--sandbox', 'live', '--state-dir', state]);
      expect(detached.status, detached.stderr).toBe(0);
    });
  }
});
