/**
 * `vcnet watch` next to a tenant with CAP_NET_ADMIN in the pod. When vcnet's own tap of an attached
 * endpoint goes away (deleted by someone else), the watch says so, naming the endpoint and what the
 * VM is left with; a link the tenant puts in vcnet's link group is not taken for a new endpoint.
 */
import { describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();

async function watched(sandbox: string, maxEndpoints?: number, debounceMs = 50) {
  const stateDir = cleanup.directory('vcnet-watch-tenant-');
  const { pod } = makePod();
  const attach = vcnet(['attach', '--sandbox', sandbox, '--netns', pod.path, '--state-dir', stateDir]);
  expect(attach.status, attach.stderr).toBe(0);
  const applied: WatchSummary[] = [];
  const notices: NoticeEvent[] = [];
  const onNotice = (message: unknown) => notices.push(message as NoticeEvent);
  channels.notice.subscribe(onNotice);
  cleanup.defer(() => channels.notice.unsubscribe(onNotice));
  const watching = await watchSandbox(sandbox, {
    stateDirectory: stateDir,
    debounceMs,
    onApplied: (summary) => applied.push(summary),
    ...(maxEndpoints !== undefined ? { maxEndpoints } : {}),
  });
  cleanup.defer(() => watching.stop());
  return { pod, applied, notices, watching };
}

describe('vcnet watch with a tenant in the pod', () => {
  it("says when vcnet's tap of an attached endpoint is deleted, naming the endpoint and what the VM is left with", async () => {
    const { pod, applied, notices } = await watched('lost');
    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    await until(() => applied.some((summary) => summary.lostDevices !== undefined), 'a lost device');
    const summary = applied.find((entry) => entry.lostDevices !== undefined)!;
    expect(summary.lostDevices).toEqual([{ endpoint: 'eth0', device: 'tap0_kata', message: expect.any(String) }]);
    expect(summary.removed).toEqual([]);
    const notice = notices.find((entry) => entry.operation === 'watch' && entry.endpoint === 'eth0');
    expect(notice?.message).toMatch(
      /^tap0_kata, vcnet's device for eth0 \(endpoint eth0\), is gone from the namespace .*: the VM would get a NIC eth0 with no backend; `vcnet del-iface lost FILE` removes the endpoint .* `vcnet add-iface lost FILE` attaches eth0 again$/,
    );
  });

  it("does not take the deletion of a tap vcnet removed itself for the loss of a new endpoint's tap of the same name", async () => {
    // Delete an attached link and add another within one debounce: the new endpoint gets the freed
    // tap name (tap1_kata), and the next pass sees the old tap1_kata's deletion (another ifindex).
    const { pod, applied, notices, watching } = await watched('reuse', undefined, 400);
    const addVeth = (name: string, subnet: string) => {
      pod.exec('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
      pod.exec('ip', ['link', 'set', name, 'up']);
      pod.exec('ip', ['addr', 'add', subnet, 'dev', name]);
    };
    addVeth('ethA', '10.231.1.2/24');
    await until(() => applied.some((summary) => summary.added.includes('ethA')), 'ethA attached');
    pod.exec('ip', ['link', 'del', 'ethA']);
    addVeth('ethB', '10.231.2.2/24');
    await until(() => applied.some((summary) => summary.added.includes('ethB')), 'ethB attached');
    const both = applied.find((summary) => summary.added.includes('ethB'))!;
    expect(both.removed).toEqual(['ethA']);
    // The pass that reads the old tap's deletion comes a debounce later; stopping with applyPending
    // reads the namespace once more and applies what it finds first, so it has been read by then.
    await watching.stop({ applyPending: true });
    expect(applied.flatMap((summary) => summary.lostDevices ?? [])).toEqual([]);
    expect(notices.filter((notice) => notice.operation === 'watch' && /is gone/.test(notice.message ?? ''))).toEqual(
      [],
    );
    // And it is ethB's tap indeed, in place.
    const filters = pod.exec('tc', ['filter', 'show', 'dev', 'ethB', 'ingress']);
    expect(filters).toMatch(/to device tap1_kata/);
  });

  it('attaches no new link beyond maxEndpoints, names it, and leaves it alone', async () => {
    const { pod, applied, notices } = await watched('bound', 2);
    for (const [name, subnet] of [
      ['eth7', '10.78.0.2/24'],
      ['eth8', '10.79.0.2/24'],
    ] as const) {
      pod.exec('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
      pod.exec('ip', ['link', 'set', name, 'up']);
      pod.exec('ip', ['addr', 'add', subnet, 'dev', name]);
    }
    await until(
      () => applied.flatMap((summary) => [...summary.added, ...(summary.overLimit ?? [])]).length === 2,
      'eth7 and eth8 handled',
    );
    const added = applied.flatMap((summary) => summary.added);
    const over = applied.flatMap((summary) => summary.overLimit ?? []);
    expect(added).toHaveLength(1);
    expect(over).toHaveLength(1);
    expect([...added, ...over].sort()).toEqual(['eth7', 'eth8']);
    expect(notices.find((notice) => notice.endpoint === over[0])?.message).toMatch(
      /^did not attach eth[78]: sandbox bound has 2 endpoints, the most .*maxEndpoints/,
    );
    // Left alone: a later change on it does not attach it.
    pod.exec('ip', ['addr', 'add', '10.80.0.2/24', 'dev', over[0]!]);
    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'eth9p']);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    pod.exec('ip', ['addr', 'add', '10.81.0.2/24', 'dev', 'eth9']);
    await until(() => applied.some((summary) => summary.overLimit?.includes('eth9')), 'eth9 over the limit');
    expect(applied.flatMap((summary) => summary.added)).toEqual(added);
  });

  it("does not attach a tenant's link put in vcnet's link group, and attaches the pod's new link beside it", async () => {
    const { pod, applied } = await watched('group');
    // The tenant's tun in vcnet's group, with an address: not a pod interface.
    pod.exec('ip', ['tuntap', 'add', 'dev', 'tenant-tt', 'mode', 'tap']);
    pod.exec('ip', ['link', 'set', 'tenant-tt', 'group', '30307', 'up']);
    pod.exec('ip', ['addr', 'add', '10.77.0.1/24', 'dev', 'tenant-tt']);
    // Then a veth of the pod's: once it is attached, the change with the tun has been applied too.
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    pod.exec('ip', ['link', 'set', 'eth7', 'up']);
    pod.exec('ip', ['addr', 'add', '10.78.0.2/24', 'dev', 'eth7']);
    await until(() => applied.some((summary) => summary.added.includes('eth7')), 'eth7 attached');
    expect(applied.flatMap((summary) => [...summary.added, ...summary.failed.map((failure) => failure.name)])).toEqual([
      'eth7',
    ]);
  });
});
