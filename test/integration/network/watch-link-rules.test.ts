/**
 * Which pod links `vcnet watch` attaches, and when it ends by itself. The rule (docs/cli.md, watch):
 * a link that appears after the watch started is attached, and so is one that had no address then
 * and gets one; a link that had an address and was not attached when the watch started, or that
 * del-iface took out of the VM since, is left alone, whatever later changes on it. Watch used to
 * attach such a link again at its next unrelated change (an MTU). And a detach ends the watch with
 * nothing else changing in the namespace; it used to wait for some netlink event first.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NamespaceWatcher } from '../../../src/network/namespace-watcher.js';
import { SandboxNotFoundError } from '../../../src/sandbox/sandbox-interfaces.js';
import { applyNamespaceChange, type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { fingerprint, linkMac, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { collectNotices, watchForTest } from '../../helpers/watch.js';

const cleanup = cleanupAfterEach();
/** The state directory of the running test. */
let stateDir = '';

describe('vcnet watch: which links it attaches', () => {
  it('leaves alone a link del-iface removed and one present unattached at start; attaches new ones and one that gets its first address', async () => {
    stateDir = cleanup.directory('vcnet-watch-rules-');
    const { pod } = makePod({ interfaces: 2 });
    expect(vcnet(['attach', '--sandbox', 'r1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const link = (name: string, address?: string) => {
      pod.exec('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
      pod.exec('ip', ['link', 'set', name, 'up']);
      if (address) pod.exec('ip', ['addr', 'add', address, 'dev', name]);
    };
    // Made after attach, before the watch: eth5 with an address (add-iface's to attach), eth6 without.
    link('eth5', '10.55.0.2/24');
    link('eth6');
    const { watching, applied } = await watchForTest(cleanup, 'r1', { stateDirectory: stateDir });
    const attached = () =>
      (
        JSON.parse(readFileSync(join(stateDir, 'r1', 'state.json'), 'utf8')) as {
          network: { endpoints: Array<{ properties: { link: { name: string } } }> };
        }
      ).network.endpoints
        .map((endpoint) => endpoint.properties.link.name)
        .sort();

    const request = join(stateDir, 'del.json');
    writeFileSync(request, JSON.stringify({ name: 'eth1' }));
    expect(vcnet(['del-iface', 'r1', request, '--state-dir', stateDir]).status).toBe(0);
    expect(attached()).toEqual(['eth0']);

    // Unrelated changes on both: neither is attached (a pass that does nothing is not reported, so
    // the wait is a time, several debounces long).
    pod.exec('ip', ['link', 'set', 'eth1', 'mtu', '1400']);
    pod.exec('ip', ['link', 'set', 'eth5', 'mtu', '1400']);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(applied).toEqual([]);
    // Then a change the watch acts on, so everything before it has been seen.
    link('eth7', '10.77.0.2/24');
    await until(() => applied.some((summary) => summary.added.includes('eth7')), 'eth7 to be attached');
    expect(applied.flatMap((summary) => summary.added)).toEqual(['eth7']);
    expect(attached()).toEqual(['eth0', 'eth7']);

    // eth6 had no address when the watch started: its first address attaches it.
    pod.exec('ip', ['addr', 'add', '10.66.0.2/24', 'dev', 'eth6']);
    await until(() => applied.some((summary) => summary.added.includes('eth6')), 'eth6 to be attached');
    // eth1 deleted and made again is a new link.
    pod.exec('ip', ['link', 'del', 'eth1']);
    link('eth1', '10.11.0.2/24');
    await until(() => applied.some((summary) => summary.added.includes('eth1')), 'the new eth1 to be attached');
    pod.exec('ip', ['link', 'set', 'eth5', 'mtu', '1300']);
    link('eth8', '10.88.0.2/24');
    await until(() => applied.some((summary) => summary.added.includes('eth8')), 'eth8 to be attached');
    expect(attached()).toEqual(['eth0', 'eth1', 'eth6', 'eth7', 'eth8']);

    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'r1', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);
});

describe('vcnet watch: MTU', () => {
  it("gives the tap the pod link's new MTU, as attach gave it the MTU then", async () => {
    stateDir = cleanup.directory('vcnet-watch-mtu-');
    const { pod, node } = makePod();
    expect(vcnet(['attach', '--sandbox', 'm1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const mtuOf = (name: string) => pod.ipJson<Array<{ mtu: number }>>('link', 'show', name)[0]?.mtu;
    expect(mtuOf('tap0_kata')).toBe(1500);
    const { watching, applied } = await watchForTest(cleanup, 'm1', { stateDirectory: stateDir });
    node.exec('ip', ['link', 'set', 'veth0', 'mtu', '1400']);
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1400']);
    await until(() => mtuOf('tap0_kata') === 1400, 'the tap to take MTU 1400');
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '1300']);
    await until(() => mtuOf('tap0_kata') === 1300, 'the tap to take MTU 1300');
    expect(applied.flatMap((summary) => summary.updated)).toContain('eth0');
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'm1', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);
});

describe('vcnet watch: a deleted pod link', () => {
  it('is one applied change: removing its tap is no second (empty) one', async () => {
    stateDir = cleanup.directory('vcnet-watch-removed-');
    const { pod } = makePod({ interfaces: 2 });
    expect(vcnet(['attach', '--sandbox', 'd1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const { watching, applied } = await watchForTest(cleanup, 'd1', { stateDirectory: stateDir });
    pod.exec('ip', ['link', 'del', 'eth1']);
    await until(() => applied.some((summary) => summary.removed.length > 0), 'eth1 to be removed');
    // The tap's deletion (by that change) is read after it, as a change of its own: stopping with
    // applyPending reads the namespace once more and applies what it finds before resolving, so the
    // tap's deletion has been seen by then, whether or not its debounce had run out.
    await watching.stop({ applyPending: true });
    expect(applied).toEqual([{ added: [], removed: ['eth1'], updated: [], failed: [] }]);
    expect(vcnet(['detach', '--sandbox', 'd1', '--state-dir', stateDir]).status).toBe(0);
  }, 30_000);
});

describe('vcnet watch: detach', () => {
  it('ends the watch with nothing else changing in the namespace', async () => {
    stateDir = cleanup.directory('vcnet-watch-rules-');
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(vcnet(['attach', '--sandbox', 'r2', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const { watching } = await watchForTest(cleanup, 'r2', { stateDirectory: stateDir });
    expect(vcnet(['detach', '--sandbox', 'r2', '--state-dir', stateDir]).status).toBe(0);
    const timeout = new Promise((resolve) => setTimeout(() => resolve('still watching after 10 s'), 10_000));
    expect(await Promise.race([watching.ended, timeout])).toBeInstanceOf(SandboxNotFoundError);
    expect(fingerprint(pod)).toEqual(before);
  }, 30_000);
});

describe('vcnet watch: a link deleted before it could be attached', () => {
  it('is neither attached, nor reported as failed, nor retried, and nothing of its attach is left', async () => {
    stateDir = cleanup.directory('vcnet-watch-vanished-');
    const { pod } = makePod({ interfaces: 1 });
    expect(vcnet(['attach', '--sandbox', 'v1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth4', 'type', 'veth', 'peer', 'name', 'eth4p']);
    pod.exec('ip', ['addr', 'add', '10.44.0.2/24', 'dev', 'eth4']);
    pod.exec('ip', ['link', 'set', 'eth4', 'up']);
    // The change as the watcher read it, then the link goes before the change is applied (veths
    // that come and go within one debounce on a busy node).
    const watcher = await NamespaceWatcher.start(pod.path, { onChange: () => {} });
    const eth4 = watcher.interfaces().find((info) => info.link.name === 'eth4');
    await watcher.stop();
    expect(eth4).toBeDefined();
    pod.exec('ip', ['link', 'del', 'eth4']);
    const before = fingerprint(pod);

    const summary = await applyNamespaceChange(
      'v1',
      { addedInterfaces: [eth4!], removedInterfaces: [], changedInterfaces: [], snapshotAt: new Date() },
      stateDir,
    );
    expect(summary).toEqual({ added: [], removed: [], updated: [], failed: [] });
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('vcnet watch: a pod link changed while no watch ran', () => {
  const recordedLinks = (id: string) =>
    (
      JSON.parse(readFileSync(join(stateDir, id, 'state.json'), 'utf8')) as {
        network: { endpoints: Array<{ properties: { link: { name: string; index: number } } }> };
      }
    ).network.endpoints
      .map((endpoint) => `${endpoint.properties.link.name}@${endpoint.properties.link.index}`)
      .sort();

  it('takes a renamed pod link (same ifindex) as removed and attached again under its new name, as while watching', async () => {
    stateDir = cleanup.directory('vcnet-watch-renamed-');
    const { pod } = makePod({ interfaces: 2 });
    expect(vcnet(['attach', '--sandbox', 'n1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const index = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'eth1')[0]?.ifindex;
    pod.exec('ip', ['link', 'set', 'eth1', 'down']);
    pod.exec('ip', ['link', 'set', 'eth1', 'name', 'eth8']);
    pod.exec('ip', ['link', 'set', 'eth8', 'up']);
    const { watching, applied } = await watchForTest(cleanup, 'n1', { stateDirectory: stateDir });
    // It used to remove the endpoint and leave eth8 alone (a link with an address there at start).
    expect(watching.leftAlone).toEqual([]);
    await until(() => applied.some((summary) => summary.added.length > 0), 'eth8 to be attached');
    expect(applied.flatMap((summary) => summary.removed)).toEqual(['eth1']);
    expect(recordedLinks('n1').filter((entry) => entry.startsWith('eth8'))).toEqual([`eth8@${index}`]);
    expect(recordedLinks('n1').some((entry) => entry.startsWith('eth1@'))).toBe(false);
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'n1', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);

  it('does not follow a MAC changed on the same link: each watch start says so (tcfilter) and plugs nothing again', async () => {
    stateDir = cleanup.directory('vcnet-watch-mac-');
    const { pod } = makePod();
    // The kernel drops a link's permanent neighbours when its MAC changes: a change the guest is
    // told of (updated), which is not what this is about.
    pod.exec('ip', ['neigh', 'flush', 'dev', 'eth0', 'nud', 'permanent']);
    expect(vcnet(['attach', '--sandbox', 'c1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const tapIndex = () => pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'tap0_kata')[0]?.ifindex;
    const before = { tap: tapIndex(), record: recordedLinks('c1') };
    const guestMac = linkMac(pod);
    pod.exec('ip', ['link', 'set', 'eth0', 'address', '02:aa:00:00:00:02']);
    for (let start = 0; start < 2; start++) {
      const { watching, applied } = await watchForTest(cleanup, 'c1', { stateDirectory: stateDir });
      // The guest NIC keeps the MAC of the attach (watch-pod-mac.test.ts): said, by each watch.
      await until(() => applied.length > 0, 'the changed MAC to be said');
      // Anything else comes with it, or in a pass after it that reads what it did: stopping with
      // applyPending reads the namespace once more and applies what it finds before resolving.
      await watching.stop({ applyPending: true });
      // It used to take the link as made again: endpoint removed, link attached anew, tap replaced.
      expect(applied).toEqual([
        {
          added: [],
          removed: [],
          updated: [],
          failed: [],
          macChanges: [
            {
              endpoint: 'eth0',
              link: 'eth0',
              guestMac,
              podMac: '02:aa:00:00:00:02',
              message: expect.stringContaining(
                `sandbox c1: eth0's MAC changed to 02:aa:00:00:00:02, but the VM's NIC eth0 keeps ${guestMac}`,
              ),
            },
          ],
        },
      ]);
    }
    expect({ tap: tapIndex(), record: recordedLinks('c1') }).toEqual(before);
    expect(vcnet(['detach', '--sandbox', 'c1', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);
});

describe('vcnet watch: a sandbox whose VM is gone', () => {
  it('removes a deleted pod link on the host side only (its QMP socket is not there), with a warning', async () => {
    stateDir = cleanup.directory('vcnet-watch-vmgone-');
    const { pod } = makePod({ interfaces: 2 });
    const qmp = join(stateDir, 'gone-qmp.sock');
    const agent = join(stateDir, 'gone-agent.sock');
    const attach = ['attach', '--sandbox', 'g1', '--netns', pod.path, '--state-dir', stateDir];
    expect(vcnet([...attach, '--qmp', qmp, '--agent', agent]).status).toBe(0);
    const errors: Error[] = [];
    const notices = collectNotices(cleanup);
    const { watching, applied } = await watchForTest(cleanup, 'g1', {
      stateDirectory: stateDir,
      onError: (error) => errors.push(error),
    });
    pod.exec('ip', ['link', 'del', 'eth1']);
    // It used to fail to open QMP and try again forever, the endpoint and its tap left as they were.
    await until(() => applied.some((summary) => summary.removed.includes('eth1')), 'eth1 to be removed');
    expect(errors).toEqual([]);
    expect(
      notices.some((notice) => notice.message.includes("g1's VM is gone") && notice.message.includes('host side only')),
    ).toBe(true);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((entry) => entry.ifname)).not.toContain(
      'tap1_kata',
    );
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'g1', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);

  it('reports a removal done on the host side when a new link in the same change waits for the VM', async () => {
    stateDir = cleanup.directory('vcnet-watch-vmgone-');
    const { pod } = makePod({ interfaces: 2 });
    const qmp = join(stateDir, 'gone-qmp.sock');
    const agent = join(stateDir, 'gone-agent.sock');
    const attach = ['attach', '--sandbox', 'g2', '--netns', pod.path, '--state-dir', stateDir];
    expect(vcnet([...attach, '--qmp', qmp, '--agent', agent]).status).toBe(0);
    const applied: WatchSummary[] = [];
    const errors: Error[] = [];
    const watching = await watchSandbox('g2', {
      stateDirectory: stateDir,
      // Long enough that the deletion and the new link come as one change.
      debounceMs: 500,
      onApplied: (summary) => applied.push(summary),
      onError: (error) => errors.push(error),
    });
    cleanup.defer(() => watching.stop());
    pod.exec('sh', [
      '-c',
      'ip link del eth1 && ip link add eth5 type veth peer name eth5p && ip addr add 10.55.0.2/24 dev eth5 && ip link set eth5 up',
    ]);
    // The new link needs the VM: the change fails (said once) and is tried again.
    await until(() => errors.length > 0, 'the change to fail for want of the VM');
    // It used to remove eth1 from the host and the record and say nothing of it: the summary was dropped.
    await until(
      () => applied.some((summary) => summary.removed.includes('eth1')),
      'the removal of eth1 to be reported',
    );
    expect(applied.flatMap((summary) => summary.removed)).toEqual(['eth1']);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((entry) => entry.ifname)).not.toContain(
      'tap1_kata',
    );
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'g2', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);
});
