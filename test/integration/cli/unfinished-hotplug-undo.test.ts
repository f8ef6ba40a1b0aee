/**
 * A hot-plug left half-done in a running VM (a real QEMU, paused: its guest never releases a NIC).
 *
 * - add-iface killed right after QEMU took the NIC leaves the endpoint 'pending' in the record. gc
 *   undoes it only with the VM: while QEMU answers and keeps the NIC (the unplug times out), the
 *   endpoint, its tap and its record stay and gc says why; once QEMU is gone the host side goes.
 * - A NIC under vcnet's next id that no endpoint records (what a host-only undo used to leave):
 *   add-iface says so, naming the id and the QMP commands that remove it, and adds nothing; also when
 *   the undo of that refused hot-plug hands vcnet's ingress qdisc over to another tool, which then is
 *   said too (the explanation was skipped: it looked for the bare refusal only).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import type { QueryPciBus } from '../../../src/hypervisor/qemu-hotplug-ports.js';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import { setApplyTestHook } from '../../../src/network/plan/apply.js';
import type { PlanStep } from '../../../src/network/plan/types.js';
import { addInterface } from '../../../src/sandbox/sandbox-interfaces.js';
import { killAfterHotplug, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, kataLinks, makePod } from '../../helpers/pod.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the unfinished-hot-plug tests: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-unfinished-hp-');
const vm = sandboxVmFixture();

async function qemuDevices(qmpPath: string): Promise<string[]> {
  const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
  try {
    const buses = await qmp.execute<QueryPciBus[]>('query-pci');
    return buses.flatMap((bus) => bus.devices.map((device) => device.qdev_id)).filter((id) => id !== '');
  } finally {
    await qmp.close();
  }
}

function addPodLink(pod: TestNamespace, node: TestNamespace): void {
  node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
  pod.exec('ip', ['link', 'set', 'eth9', 'up']);
  pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
}

const taps = kataLinks;

describe.skipIf(skipReason !== undefined)('an unfinished hot-plug in a running VM', () => {
  it('gc keeps the endpoint while QEMU keeps its NIC, and undoes the host side once QEMU is gone', async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const { qmpPath, agentPath } = await vm.attachAndStart('uh', pod.path, stateDirectory());
    await vm.listenAgent(agentPath);
    addPodLink(pod, node);
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
    const flag = ['--state-dir', stateDirectory()];
    const killed = vcnet(['add-iface', 'uh', request, ...flag], killAfterHotplug());
    expect(killed.status, killed.stderr).toBe(-1);
    const record = () =>
      JSON.parse(readFileSync(join(stateDirectory(), 'uh', 'state.json'), 'utf8')) as {
        network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
      };
    expect(record().network.endpoints.map((endpoint) => [endpoint.name, endpoint.plumbing.model])).toEqual([
      ['eth0', 'tcfilter'],
      ['net9', 'pending'],
    ]);
    expect(await qemuDevices(qmpPath)).toContain('net1');
    expect(taps(pod)).toEqual(['tap0_kata', 'tap1_kata']);

    // The paused guest never ejects net1: the unplug times out, and nothing of the endpoint goes.
    const kept = vcnet(['gc', '--netns', pod.path, ...flag, '--json']);
    expect(kept.status, kept.stderr).toBe(1);
    const keptReport = JSON.parse(kept.stdout) as { removed: unknown[]; failures: Array<{ reason: string }> };
    expect(keptReport.removed).toEqual([]);
    expect(keptReport.failures.map((failure) => failure.reason).join('\n')).toMatch(
      /unfinished attach of eth9 \(sandbox uh\): net1 may still be in the VM, so its record and plumbing stay/,
    );
    // The undo's whole wait for the guest (20 s), which the tests that only sit it out shorten (shortWaits).
    expect(keptReport.failures.map((failure) => failure.reason).join('\n')).toContain(
      'the guest did not release device net1 within 20000 ms',
    );
    expect(record().network.endpoints.map((endpoint) => endpoint.plumbing.model)).toEqual(['tcfilter', 'pending']);
    expect(taps(pod)).toEqual(['tap0_kata', 'tap1_kata']);

    // QEMU gone (its socket refuses): its NICs went with it, and gc undoes the host side alone.
    await vm.stopQemu();
    const collected = vcnet(['gc', '--netns', pod.path, ...flag, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    expect(JSON.parse(collected.stdout).removed).toEqual([
      expect.objectContaining({ detail: expect.stringMatching(/^unfinished attach of eth9: tun tap1_kata/) }),
    ]);
    expect(record().network.endpoints.map((endpoint) => endpoint.name)).toEqual(['eth0']);
    expect(taps(pod)).toEqual(['tap0_kata']);
    expect(vcnet(['detach', '--sandbox', 'uh', ...flag]).status).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);

  it('add-iface names a NIC the VM has under its next id that no endpoint records', async () => {
    const { pod, node } = makePod();
    const { qmpPath, agentPath } = await vm.attachAndStart('ut', pod.path, stateDirectory());
    await vm.listenAgent(agentPath);
    addPodLink(pod, node);
    // What a host-only undo of a killed hot-plug left: net1 in the VM, in no record.
    const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
    await qmp.execute('device_add', { driver: 'virtio-net-pci', id: 'net1', romfile: '' });
    await qmp.close();
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
    const recordBefore = JSON.parse(readFileSync(join(stateDirectory(), 'ut', 'state.json'), 'utf8'));
    const podBefore = fingerprint(pod);
    const refused = vcnet(['add-iface', 'ut', request, '--state-dir', stateDirectory(), '--json']);
    expect(refused.status, refused.stderr).toBe(1);
    const error = JSON.parse(refused.stdout).error;
    expect(error).toMatchObject({ code: 'VCNET_HOTPLUG_ID_TAKEN', name: 'HotplugIdTakenError', value: 'net1' });
    expect(error.message).toBe(
      "cannot hot-plug eth9 into sandbox ut's VM as net1: the VM already has a device net1, which no endpoint of the sandbox records (nothing was added)",
    );
    expect(error.hint).toContain(`QMP on ${qmpPath}`);
    expect(error.hint).toContain('{"execute":"device_del","arguments":{"id":"net1"}}');
    expect(error.hint).toContain('{"execute":"netdev_del","arguments":{"id":"netdev-net1"}}');
    // Nothing half-built: the record and the pod as they were, and no netdev-net1 in QEMU.
    expect(JSON.parse(readFileSync(join(stateDirectory(), 'ut', 'state.json'), 'utf8'))).toEqual(recordBefore);
    expect(fingerprint(pod)).toEqual(podBefore);
    const check = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
    const network = await check
      .execute<string>('human-monitor-command', { 'command-line': 'info network' })
      .finally(() => check.close());
    expect(network).not.toContain('netdev-net1');
    await vm.stopQemu();
    expect(vcnet(['detach', '--sandbox', 'ut', '--state-dir', stateDirectory()]).status).toBe(0);
  }, 90_000);

  it("says both the NIC under its next id and the ingress qdisc the refused hot-plug's undo handed over", async () => {
    const { pod, node } = makePod();
    const { qmpPath, agentPath } = await vm.attachAndStart('uq', pod.path, stateDirectory());
    await vm.listenAgent(agentPath);
    addPodLink(pod, node);
    const podBefore = fingerprint(pod);
    const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 5_000 });
    await qmp.execute('device_add', { driver: 'virtio-net-pci', id: 'net1', romfile: '' });
    await qmp.close();
    const recordBefore = JSON.parse(readFileSync(join(stateDirectory(), 'uq', 'state.json'), 'utf8'));
    // Once vcnet's ingress qdisc on eth9 is made, another tool puts its own filter in it.
    let previous: PlanStep | undefined;
    setApplyTestHook((step) => {
      const last = previous;
      previous = step;
      if (last?.change.op === 'add-qdisc' && last.change.link.name === 'eth9')
        pod.exec(
          'tc',
          'filter add dev eth9 ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
        );
    });
    const notices: NoticeEvent[] = [];
    const listener = (message: unknown) => notices.push(message as NoticeEvent);
    channels.notice.subscribe(listener);
    let error: Error & { code?: string; hint?: string; handedOver?: string[] };
    try {
      error = await addInterface('uq', JSON.stringify({ device: 'eth9', name: 'net9' }), {
        stateDirectory: stateDirectory(),
      }).then(
        () => new Error('add-iface succeeded'),
        (caught: unknown) => caught as Error,
      );
    } finally {
      setApplyTestHook(undefined);
      channels.notice.unsubscribe(listener);
    }
    const handedOver = "the ingress qdisc on eth9, which stays: it holds another tool's filter (prio 100)";
    expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).toBe(
      `attaching eth9 failed: cannot hot-plug eth9 into sandbox uq's VM as net1: the VM already has a device net1, which no endpoint of the sandbox records (nothing was added to the VM) (everything it had made was removed but ${handedOver}; vcnet's own filters in it were deleted and no record keeps it, as it is that tool's now: neither detach nor gc will delete it)`,
    );
    expect(error.handedOver).toEqual([handedOver]);
    expect((error.cause as Error & { code?: string }).code).toBe('VCNET_HOTPLUG_ID_TAKEN');
    expect(error.hint).toContain(`QMP on ${qmpPath}`);
    expect(error.hint).toContain('{"execute":"device_del","arguments":{"id":"net1"}}');
    expect(error.hint).toContain('but for what another tool holds, which the message names');
    expect(notices).toContainEqual({
      operation: 'add-iface',
      endpoint: 'eth9',
      message:
        "rolling back the failed add-iface: kept the ingress qdisc on eth9: it holds another tool's filter (prio 100); only vcnet's own filters in it were deleted",
    });
    // The record as it was, and the pod but for the other tool's filter in the qdisc handed over.
    expect(JSON.parse(readFileSync(join(stateDirectory(), 'uq', 'state.json'), 'utf8'))).toEqual(recordBefore);
    const filters = pod.exec('tc', 'filter show dev eth9 ingress'.split(' '));
    expect(filters).toContain('match 0a090909/ffffffff at 16');
    expect(filters).not.toContain('Redirect');
    pod.exec('tc', 'qdisc del dev eth9 ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(podBefore);
    await vm.stopQemu();
    expect(vcnet(['detach', '--sandbox', 'uq', '--state-dir', stateDirectory()]).status).toBe(0);
  }, 120_000);
});
