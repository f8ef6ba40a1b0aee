/**
 * Pieces of the tests of an unfinished hot-plug's undo (gc's, watch's) while another client holds
 * QEMU's QMP: the sandbox left by an add-iface killed right after QEMU took its NIC, and the pod
 * given back once the VM stopped.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { TestCleanup } from '../../helpers/cleanup.js';
import { killAfterHotplug, vcnet } from '../../helpers/cli.js';
import { eth9ToAdd, sandboxesBehindRelay } from '../../helpers/held-vm.js';
import { fingerprint, kataLinks } from '../../helpers/pod.js';
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
  const sandboxed = await sandboxesBehindRelay(vm, cleanup, () => directory)(sandbox);
  const { pod, before, qemuQmpPath, qmpPath, relay } = sandboxed;
  const { request } = await eth9ToAdd(cleanup, directory, sandboxed);
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
