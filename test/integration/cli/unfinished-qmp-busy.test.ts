/**
 * gc, and `vcnet watch` at its start, undoing an add-iface killed right after QEMU took the NIC (its
 * endpoint 'pending' in the record) while another client holds QEMU's QMP (QEMU greets one client
 * at a time). Both used to connect under the sandbox's lock (gc under the namespace's too) for the
 * whole VCNET_QMP_CONNECT_TIMEOUT: every other command on the sandbox timed out on the lock meanwhile
 * ("is being changed by process"). They now wait for QMP without the locks, as detach does; gc runs
 * again from a fresh read once QMP is free. A QMP still held at the end of that wait leaves the
 * record as it is: for gc's next run, said in `skipped`; watch starts anyway, saying so.
 */
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { shortWaits, stateDirectoryPerTest, type vcnetAsync } from '../../helpers/cli.js';
import { expectListIfacesAnswers, holdQmp, vcnetWaitingForQmp } from '../../helpers/held-vm.js';
import { fingerprint } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';
import { expectUnfinishedLeftForNextGc } from './gc-left-unfinished.js';
import { detachOnceQemuStopped, recordedModels, unfinishedHotplug } from './unfinished-hotplug-qmp-held.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the gc- and watch-with-QMP-busy tests: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-unfinished-qmp-busy-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();

/** vcnet `args` on the test's state directory, seen waiting for QMP (VCNET_QMP_CONNECT_TIMEOUT `qmpWaitSeconds`). */
function waitingForQmp(
  args: string[],
  relay: { accepted: () => number },
  qmpWaitSeconds: string,
  env: Record<string, string> = {},
) {
  return vcnetWaitingForQmp(cleanup, [...args, '--state-dir', stateDirectory()], relay, qmpWaitSeconds, env);
}

/** Stops `watching` (SIGTERM), which must end cleanly. */
async function stopWatch(watching: ReturnType<typeof vcnetAsync>): Promise<void> {
  watching.child.kill('SIGTERM');
  const stopped = await watching.done;
  expect(stopped.status, stopped.stderr).toBe(0);
}

describe.skipIf(skipReason !== undefined)(
  "gc of an unfinished hot-plug while another client holds the VM's QMP",
  () => {
    it('waits for QMP without the locks: list-ifaces of the sandbox answers meanwhile; gc asks QEMU for the NIC once QMP is free', async () => {
      const { pod, before, qemuQmpPath, relay } = await unfinishedHotplug(vm, cleanup, stateDirectory(), 'gq');
      const holder = await holdQmp(cleanup, qemuQmpPath);
      // The paused guest never releases net1: the undo's 20 s wait for it is only sat out here
      // (unfinished-hotplug-undo.test.ts keeps it whole).
      const collecting = await waitingForQmp(
        ['gc', '--netns', pod.path, '--json'],
        relay,
        '60',
        shortWaits({ unplugMs: 1_000 }),
      );
      await expectListIfacesAnswers(stateDirectory(), 'gq', '10');
      expect(collecting.child.exitCode, 'gc still waiting for QMP').toBeNull();

      await holder.release();
      const collected = await collecting.done;
      // QMP answered gc: device_del went to QEMU, whose paused guest never releases net1, so the
      // endpoint, its tap and its record stay (the unplug's own timeout), as without another client.
      expect(collected.status, collected.stderr).toBe(1);
      const report = JSON.parse(collected.stdout) as { failures: Array<{ reason: string }>; skipped: unknown[] };
      expect(report.skipped).toEqual([]);
      expect(report.failures.map((failure) => failure.reason).join('\n')).toMatch(
        /unfinished attach of eth9 \(sandbox gq\): net1 may still be in the VM, so its record and plumbing stay/,
      );
      expect(recordedModels(stateDirectory(), 'gq')).toEqual([
        ['eth0', 'tcfilter'],
        ['net9', 'pending'],
      ]);

      await detachOnceQemuStopped(vm, stateDirectory(), 'gq', { pod, before });
    }, 180_000);

    it('leaves the record as it is, said in skipped, when QMP is still held at the end of its wait', async () => {
      const { pod, before, qemuQmpPath, qmpPath, relay } = await unfinishedHotplug(vm, cleanup, stateDirectory(), 'gs');
      const withPending = fingerprint(pod);
      await holdQmp(cleanup, qemuQmpPath);
      const collecting = await waitingForQmp(['gc', '--netns', pod.path, '--json'], relay, '8');
      await expectListIfacesAnswers(stateDirectory(), 'gs', '10');
      const reason = expectUnfinishedLeftForNextGc(await collecting.done, stateDirectory(), 'gs');
      expect(reason).toContain(`QMP socket ${qmpPath}`);
      // Held throughout: the whole 8 s wait without the locks, then one try under them, all of it said.
      const said = reason.match(
        /did not greet gc within (\d+) ms in all, (\d+) ms of it under the sandbox's lock \(at most 1000 ms\), the rest without it/,
      );
      expect(said, reason).not.toBeNull();
      expect(Number(said?.[1])).toBeGreaterThanOrEqual(7_999 + Number(said?.[2]));
      expect(reason).toContain(`ss -xp | grep ${qmpPath}`);
      expect(reason).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds>');
      expect(recordedModels(stateDirectory(), 'gs')).toEqual([
        ['eth0', 'tcfilter'],
        ['net9', 'pending'],
      ]);
      expect(fingerprint(pod)).toEqual(withPending);

      await detachOnceQemuStopped(vm, stateDirectory(), 'gs', { pod, before });
    }, 180_000);
  },
);

describe.skipIf(skipReason !== undefined)(
  "vcnet watch's undo of an unfinished hot-plug while another client holds the VM's QMP",
  () => {
    it('waits for QMP without the lock: list-ifaces of the sandbox answers meanwhile; watch asks QEMU for the NIC once QMP is free', async () => {
      const { pod, before, qemuQmpPath, relay } = await unfinishedHotplug(vm, cleanup, stateDirectory(), 'wq');
      const holder = await holdQmp(cleanup, qemuQmpPath);
      // The paused guest never releases net1: the undo's 20 s wait for it is only sat out here
      // (unfinished-hotplug-undo.test.ts keeps it whole).
      const watching = await waitingForQmp(
        ['watch', '--sandbox', 'wq', '--debounce', '50'],
        relay,
        '60',
        shortWaits({ unplugMs: 1_000 }),
      );
      await expectListIfacesAnswers(stateDirectory(), 'wq', '5');
      expect(watching.output().stderr).not.toContain('watching sandbox wq');

      await holder.release();
      // QMP answered watch: device_del went to QEMU, whose paused guest never releases net1, so the
      // endpoint, its tap and its record stay (the unplug's own timeout), as without another client.
      await until(() => watching.output().stderr.includes('watching sandbox wq'), 'the watch to start', 90_000);
      expect(watching.output().stderr).toMatch(
        /vcnet: watch could not undo the unfinished attach of eth9 \(net1 may still be in the VM, so its record and plumbing stay/,
      );
      await stopWatch(watching);
      expect(recordedModels(stateDirectory(), 'wq')).toEqual([
        ['eth0', 'tcfilter'],
        ['net9', 'pending'],
      ]);

      await detachOnceQemuStopped(vm, stateDirectory(), 'wq', { pod, before });
    }, 240_000);

    it('starts anyway when QMP is still held at the end of its wait, leaving the unfinished attach as it is and saying so', async () => {
      const { pod, before, qemuQmpPath, qmpPath, relay } = await unfinishedHotplug(vm, cleanup, stateDirectory(), 'ws');
      const withPending = fingerprint(pod);
      await holdQmp(cleanup, qemuQmpPath);
      const watching = await waitingForQmp(['watch', '--sandbox', 'ws', '--debounce', '50'], relay, '8');
      await expectListIfacesAnswers(stateDirectory(), 'ws', '5');
      await until(() => watching.output().stderr.includes('watching sandbox ws'), 'the watch to start', 60_000);
      const { stderr } = watching.output();
      expect(stderr).toContain('vcnet: watch could not undo the unfinished attach of eth9 (');
      expect(stderr).toContain(`QMP socket ${qmpPath}`);
      // Held throughout: the whole 8 s wait without the locks, then one try under them, all of it said.
      const said = stderr.match(
        /did not greet watch within (\d+) ms in all, (\d+) ms of it under the sandbox's lock \(at most 1000 ms\), the rest without it/,
      );
      expect(said, stderr).not.toBeNull();
      expect(Number(said?.[1])).toBeGreaterThanOrEqual(7_999 + Number(said?.[2]));
      expect(stderr).toContain(`ss -xp | grep ${qmpPath}`);
      expect(stderr).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds>');
      await stopWatch(watching);
      // Nothing of it was changed: the record and the pod wait for gc or the next watch.
      expect(recordedModels(stateDirectory(), 'ws')).toEqual([
        ['eth0', 'tcfilter'],
        ['net9', 'pending'],
      ]);
      expect(fingerprint(pod)).toEqual(withPending);

      await detachOnceQemuStopped(vm, stateDirectory(), 'ws', { pod, before });
    }, 240_000);
  },
);
