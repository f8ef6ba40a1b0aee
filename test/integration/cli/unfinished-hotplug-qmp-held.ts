/**
 * Pieces of the tests of an unfinished hot-plug's undo (gc's, watch's) while another client holds
 * QEMU's QMP: the sandbox left by an add-iface killed right after QEMU took its NIC, the command
 * that undoes it started and seen waiting for QMP, and list-ifaces answering meanwhile.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { TestCleanup } from '../../helpers/cleanup.js';
import { killAfterHotplug, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { addEth9, relayQmp, serveSilentAgent } from '../../helpers/held-vm.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { fingerprint, kataLinks, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import type { sandboxVmFixture } from '../hypervisor/paused-qemu.js';

/** The endpoints of sandbox `sandbox`'s record in `directory`: name and model. */
export function recordedModels(directory: string, sandbox: string): string[][] {
  const record = JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8')) as {
    network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
  };
  return record.network.endpoints.map((endpoint) => [endpoint.name, endpoint.plumbing.model]);
}

/**
 * A paused QEMU behind a relay that counts connections, and an add-iface of eth9 killed right after
 * QEMU took its NIC (net1): the record keeps it 'pending', for gc or watch to undo.
 */
export async function unfinishedHotplug(
  vm: ReturnType<typeof sandboxVmFixture>,
  cleanup: TestCleanup,
  directory: string,
  sandbox: string,
) {
  const { pod, node } = makePod();
  const before = fingerprint(pod);
  const qemuQmpPath = join(directory, 'qemu-qmp.sock');
  const { qemu, qmpPath, agentPath } = await vm.attachAndStart(sandbox, pod.path, directory, { qemuQmpPath });
  const relay = await relayQmp(cleanup, qmpPath, qemuQmpPath, qemu.pid);
  await serveSilentAgent(cleanup, agentPath);
  addEth9({ pod, node });
  const request = writeRequest(directory, 'add.json', { device: 'eth9', name: 'net9' });
  const killed = vcnet(['add-iface', sandbox, request, '--state-dir', directory], killAfterHotplug());
  expect(killed.status, killed.stderr).toBe(-1);
  expect(recordedModels(directory, sandbox)).toEqual([
    ['eth0', 'tcfilter'],
    ['net9', 'pending'],
  ]);
  expect(kataLinks(pod)).toEqual(['tap0_kata', 'tap1_kata']);
  return { pod, before, qemuQmpPath, qmpPath, relay };
}

/**
 * The end of such a test: the VM stopped, `vcnet detach` of the sandbox, and eth9 deleted give back
 * the pod as it was before (`before`, its fingerprint then).
 */
export async function detachOnceQemuStopped(
  vm: ReturnType<typeof sandboxVmFixture>,
  directory: string,
  sandbox: string,
  { pod, before }: Pick<Awaited<ReturnType<typeof unfinishedHotplug>>, 'pod' | 'before'>,
): Promise<void> {
  await vm.stopQemu();
  const detached = vcnet(['detach', '--sandbox', sandbox, '--state-dir', directory]);
  expect(detached.status, detached.stderr).toBe(0);
  pod.exec('ip', ['link', 'del', 'eth9']);
  expect(fingerprint(pod)).toEqual(before);
}

/**
 * The vcnet command `args` (VCNET_QMP_CONNECT_TIMEOUT `qmpWaitSeconds`, and `env`), once it has
 * connected to the relay on the recorded QMP socket: it waits for QEMU's greeting, which the other
 * client holds. Killed after the test if still running.
 */
export async function runWaitingForQmp(
  cleanup: TestCleanup,
  args: string[],
  relay: { accepted: () => number },
  qmpWaitSeconds: string,
  env: Record<string, string> = {},
): Promise<ReturnType<typeof vcnetAsync>> {
  const acceptedBefore = relay.accepted();
  const running = vcnetAsync(args, { VCNET_QMP_CONNECT_TIMEOUT: qmpWaitSeconds, ...env });
  cleanup.defer(async () => {
    running.child.kill('SIGKILL');
    await running.done;
  });
  await until(() => relay.accepted() > acceptedBefore, `${args[0]}'s QMP connection`, 30_000);
  return running;
}

/** list-ifaces of `sandbox` answers, waiting at most `lockTimeoutSeconds` for the sandbox's lock. */
export async function expectListIfacesAnswers(
  directory: string,
  sandbox: string,
  lockTimeoutSeconds: string,
): Promise<void> {
  const listed = await vcnetAsync(['list-ifaces', sandbox, '--json', '--state-dir', directory], {
    VCNET_LOCK_TIMEOUT: lockTimeoutSeconds,
  }).done;
  expect(listed.stderr).not.toContain('is being changed by process');
  expect(listed.status, listed.stderr).toBe(0);
  expect(listed.stdout).toContain('"eth0"');
}
