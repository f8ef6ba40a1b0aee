/**
 * vcnet's redirect filter on the pod link deleted by hand (`tc filter del`) after attach, its qdisc
 * still there: the undo plan counts it already gone, so `detach --dry-run` says so and plans no
 * deletion the kernel would answer "gone", and the detach after it does exactly what it said (its
 * changes undone, the same records already gone). `gc --dry-run` reads the same plan for the record
 * of a killed attach: it lists what gc then removes, and neither names the filter that was not there.
 */
import { describe, expect, it } from 'vitest';
import { killAtStep, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-missing-filter-');

const VCNET_PRIORITY = 49152;
const GONE_LINE = `# already gone: u32 filter prio ${VCNET_PRIORITY} on eth0\n`;

/** The priorities of eth0's ingress filters. */
const eth0Priorities = (pod: TestNamespace) =>
  [
    ...new Set(
      pod.tcJson<Array<{ pref: number }>>('filter', 'show', 'dev', 'eth0', 'ingress').map((filter) => filter.pref),
    ),
  ].sort();

/** Deletes vcnet's filter on eth0's ingress by hand: whether it was there. */
function deleteVcnetFilter(pod: TestNamespace): boolean {
  if (!eth0Priorities(pod).includes(VCNET_PRIORITY)) return false;
  pod.exec('tc', ['filter', 'del', 'dev', 'eth0', 'parent', 'ffff:', 'prio', String(VCNET_PRIORITY)]);
  return true;
}

/** Another tool's filter in eth0's ingress qdisc (vcnet's), at prio 7. */
function addTheirs(pod: TestNamespace): void {
  pod.exec('tc', 'filter add dev eth0 ingress prio 7 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '));
}

/** `detach --dry-run` (text and --json), then detach --json: what each said. */
function dryRunThenDetach(args: string[]) {
  const dry = vcnet(['detach', '--dry-run', ...args]);
  expect(dry.status, dry.stderr).toBe(0);
  const json = JSON.parse(vcnet(['detach', '--dry-run', '--json', ...args]).stdout) as {
    alreadyGone: number;
    kept: number;
    alreadyGoneObjects: string[];
  };
  const detach = vcnet(['detach', ...args, '--json']);
  expect(detach.status, detach.stderr).toBe(0);
  return {
    text: dry.stdout,
    planned: Number(/^# (\d+) change\(s\)$/m.exec(dry.stdout)?.[1]),
    json,
    done: JSON.parse(detach.stdout) as { undone: number; alreadyGone: number; kept: number },
  };
}

describe("vcnet's filter deleted by hand from a qdisc that is still there", () => {
  for (const theirs of [false, true]) {
    it(`${theirs ? "in an ingress qdisc kept for another tool's filter" : "in vcnet's own ingress qdisc"}: detach --dry-run says already gone, and detach does what it said`, () => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const args = ['--sandbox', 'hand', '--state-dir', stateDirectory()];
      const attach = vcnet(['attach', ...args, '--netns', pod.path]);
      expect(attach.status, attach.stderr).toBe(0);
      if (theirs) addTheirs(pod);
      expect(deleteVcnetFilter(pod)).toBe(true);
      const { text, planned, json, done } = dryRunThenDetach(args);
      expect(text).toContain(GONE_LINE);
      expect(text).not.toMatch(/^tc filter del dev eth0 /m);
      expect(json.alreadyGoneObjects).toEqual([`u32 filter prio ${VCNET_PRIORITY} on eth0`]);
      expect(done).toEqual({ ...done, undone: planned, alreadyGone: json.alreadyGone, kept: json.kept });
      expect(done.alreadyGone).toBe(1);
      if (theirs) {
        // The qdisc stays with their filter in it; gone with it, eth0 is as before attach.
        expect(eth0Priorities(pod)).toEqual([7]);
        pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
      }
      expect(fingerprint(pod)).toEqual(before);
    }, 60_000);
  }

  for (const mode of ['detach', 'gc'] as const) {
    it(`the record of an attach killed at any step, its filter deleted by hand: ${mode} --dry-run says what ${mode} then does`, async () => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const state = stateDirectory();
      const args = ['--sandbox', 'killed', '--state-dir', state];
      const gcArgs = ['gc', '--netns', pod.path, '--state-dir', state, '--json'];
      const removed = (extra: string[]) => {
        const result = vcnet([...gcArgs, ...extra]);
        expect(result.status, result.stderr).toBe(0);
        return (JSON.parse(result.stdout) as { removed: Array<{ kind: string; detail: string }> }).removed
          .filter((item) => item.kind === 'state')
          .map((item) => item.detail);
      };
      let deleted = 0;
      for (let position = 0; ; position++) {
        const paused = await killAtStep(['attach', ...args, '--netns', pod.path], position);
        if (!paused) {
          expect(vcnet(['detach', ...args]).status).toBe(0);
          break;
        }
        const handDeleted = deleteVcnetFilter(pod);
        if (handDeleted) deleted++;
        if (mode === 'detach') {
          const { text, planned, json, done } = dryRunThenDetach(args);
          expect(done, `killed at step ${position}`).toEqual({
            ...done,
            undone: planned,
            alreadyGone: json.alreadyGone,
            kept: json.kept,
          });
          if (handDeleted) expect(text, `killed at step ${position}`).toContain(GONE_LINE);
        } else {
          const planned = removed(['--dry-run']);
          expect(removed([]), `killed at step ${position}`).toEqual(planned);
          // Only what the undo takes away: not the filter that was gone already.
          expect(planned.join('\n'), `killed at step ${position}`).not.toContain(
            `filter prio ${VCNET_PRIORITY} on eth0`,
          );
        }
        expect(fingerprint(pod), `killed at step ${position}`).toEqual(before);
      }
      expect(deleted).toBeGreaterThan(0);
    }, 600_000);
  }
});
