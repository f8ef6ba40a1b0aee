/**
 * gc undoing an add-iface killed right after QEMU took the NIC (its endpoint 'pending' in the record)
 * while another client holds QEMU's QMP (QEMU greets one client at a time). gc used to connect under
 * the sandbox's and the namespace's locks for the whole VCNET_QMP_CONNECT_TIMEOUT: every other
 * command on the sandbox timed out on the lock meanwhile ("is being changed by process"). It now
 * waits for QMP without the locks, as detach does, and runs again from a fresh read once QMP is free;
 * a QMP still held at the end of that wait leaves the record for gc's next run, said in `skipped`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { killAfterHotplug, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { addEth9, holdQmp, relayQmp, serveSilentAgent } from '../../helpers/held-vm.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { fingerprint, kataLinks, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the gc-with-QMP-busy tests: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-gc-qmp-busy-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();

/** The endpoints of sandbox `sandbox`'s record: name and model. */
function recordedModels(sandbox: string): string[][] {
  const record = JSON.parse(readFileSync(join(stateDirectory(), sandbox, 'state.json'), 'utf8')) as {
    network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
  };
  return record.network.endpoints.map((endpoint) => [endpoint.name, endpoint.plumbing.model]);
}

/**
 * A paused QEMU behind a relay that counts connections, and an add-iface of eth9 killed right after
 * QEMU took its NIC (net1): the record keeps it 'pending', for gc to undo.
 */
async function unfinishedHotplug(sandbox: string) {
  const { pod, node } = makePod();
  const before = fingerprint(pod);
  const qemuQmpPath = join(stateDirectory(), 'qemu-qmp.sock');
  const { qemu, qmpPath, agentPath } = await vm.attachAndStart(sandbox, pod.path, stateDirectory(), { qemuQmpPath });
  const relay = await relayQmp(cleanup, qmpPath, qemuQmpPath, qemu.pid);
  await serveSilentAgent(cleanup, agentPath);
  addEth9({ pod, node });
  const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
  const killed = vcnet(['add-iface', sandbox, request, '--state-dir', stateDirectory()], killAfterHotplug());
  expect(killed.status, killed.stderr).toBe(-1);
  expect(recordedModels(sandbox)).toEqual([
    ['eth0', 'tcfilter'],
    ['net9', 'pending'],
  ]);
  expect(kataLinks(pod)).toEqual(['tap0_kata', 'tap1_kata']);
  return { pod, before, qemuQmpPath, qmpPath, relay };
}

/**
 * `vcnet gc --netns POD --json` (VCNET_QMP_CONNECT_TIMEOUT `qmpWaitSeconds`), once it has connected to
 * the relay on the recorded QMP socket: it waits for QEMU's greeting, which the other client holds.
 */
async function gcWaitingForQmp(
  podPath: string,
  relay: { accepted: () => number },
  qmpWaitSeconds: string,
): Promise<ReturnType<typeof vcnetAsync>> {
  const acceptedBefore = relay.accepted();
  const collecting = vcnetAsync(['gc', '--netns', podPath, '--state-dir', stateDirectory(), '--json'], {
    VCNET_QMP_CONNECT_TIMEOUT: qmpWaitSeconds,
  });
  cleanup.defer(async () => {
    collecting.child.kill('SIGKILL');
    await collecting.done;
  });
  await until(() => relay.accepted() > acceptedBefore, "gc's QMP connection", 30_000);
  return collecting;
}

/** list-ifaces of `sandbox` answers (it takes the sandbox's lock, waiting 10 s for it). */
async function expectListIfacesAnswers(sandbox: string): Promise<void> {
  const listed = await vcnetAsync(['list-ifaces', sandbox, '--json', '--state-dir', stateDirectory()], {
    VCNET_LOCK_TIMEOUT: '10',
  }).done;
  expect(listed.stderr).not.toContain('is being changed by process');
  expect(listed.status, listed.stderr).toBe(0);
  expect(listed.stdout).toContain('"eth0"');
}

describe.skipIf(skipReason !== undefined)(
  "gc of an unfinished hot-plug while another client holds the VM's QMP",
  () => {
    it('waits for QMP without the locks: list-ifaces of the sandbox answers meanwhile; gc asks QEMU for the NIC once QMP is free', async () => {
      const { pod, before, qemuQmpPath, relay } = await unfinishedHotplug('gq');
      const holder = await holdQmp(cleanup, qemuQmpPath);
      const collecting = await gcWaitingForQmp(pod.path, relay, '60');
      await expectListIfacesAnswers('gq');
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
      expect(recordedModels('gq')).toEqual([
        ['eth0', 'tcfilter'],
        ['net9', 'pending'],
      ]);

      await vm.stopQemu();
      const detached = vcnet(['detach', '--sandbox', 'gq', '--state-dir', stateDirectory()]);
      expect(detached.status, detached.stderr).toBe(0);
      pod.exec('ip', ['link', 'del', 'eth9']);
      expect(fingerprint(pod)).toEqual(before);
    }, 180_000);

    it('leaves the record as it is, said in skipped, when QMP is still held at the end of its wait', async () => {
      const { pod, before, qemuQmpPath, qmpPath, relay } = await unfinishedHotplug('gs');
      const withPending = fingerprint(pod);
      await holdQmp(cleanup, qemuQmpPath);
      const collecting = await gcWaitingForQmp(pod.path, relay, '8');
      await expectListIfacesAnswers('gs');
      const collected = await collecting.done;
      // Nothing was changed, nothing failed: the record waits for gc's next run.
      expect(collected.status, collected.stderr).toBe(0);
      const report = JSON.parse(collected.stdout) as {
        removed: unknown[];
        failures: unknown[];
        skipped: Array<{ file: string; reason: string; beingChanged?: boolean }>;
      };
      expect(report.removed).toEqual([]);
      expect(report.failures).toEqual([]);
      expect(report.skipped).toEqual([
        {
          file: join(stateDirectory(), 'gs', 'state.json'),
          reason: expect.stringContaining('the unfinished attach of sandbox gs was left as it is'),
          beingChanged: true,
        },
      ]);
      const { reason } = report.skipped[0]!;
      expect(reason).toContain(`QMP socket ${qmpPath}`);
      expect(reason).toContain('8000 ms');
      expect(reason).toContain(`ss -xp | grep ${qmpPath}`);
      expect(reason).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds>');
      expect(collected.stderr).toContain(`vcnet: gc kept the record ${join(stateDirectory(), 'gs', 'state.json')}`);
      expect(recordedModels('gs')).toEqual([
        ['eth0', 'tcfilter'],
        ['net9', 'pending'],
      ]);
      expect(fingerprint(pod)).toEqual(withPending);

      await vm.stopQemu();
      const detached = vcnet(['detach', '--sandbox', 'gs', '--state-dir', stateDirectory()]);
      expect(detached.status, detached.stderr).toBe(0);
      pod.exec('ip', ['link', 'del', 'eth9']);
      expect(fingerprint(pod)).toEqual(before);
    }, 180_000);
  },
);
