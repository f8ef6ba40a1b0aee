/**
 * The macvtap model gives the pod link back as the kernel would have it had attach never happened:
 * IPv6 addresses that had not passed duplicate address detection at attach (tentative: no carrier
 * yet; dadfailed: another host on the link has the address) go through DAD again, rather than
 * coming back usable with `nodad`. Real kernel, DAD on (makePod turns it off, so these make their own).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { Network } from '../../../src/network/network.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { until } from '../../helpers/until.js';

const networks: Network[] = [];
afterEach(() => {
  for (const network of networks.splice(0)) network.close();
  cleanupNamespaces();
});

/** A pod whose eth0 (up, DAD on) is a veth to `veth0` in a node namespace, which is left down. */
function podWithDad(): { pod: TestNamespace; node: TestNamespace } {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  node.exec('ip', ['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
  pod.exec('ip', ['addr', 'add', '10.92.0.2/24', 'dev', 'eth0']);
  pod.exec('ip', ['link', 'set', 'eth0', 'up']);
  return { pod, node };
}

function openMacvtap(pod: TestNamespace): Network {
  const network = Network.open({
    namespacePath: pod.path,
    model: 'macvtap',
    namespaceCreatedByVcnet: false,
    disableNewNetns: false,
    queues: 1,
    vhostNet: 'auto',
  });
  networks.push(network);
  return network;
}

/** The flags `ip -6 addr` shows for `address` on eth0 (undefined: not there). */
function flagsOf(pod: TestNamespace, address: string): string[] | undefined {
  const links = pod.ipJson<Array<{ addr_info: Array<Record<string, unknown>> }>>('-6', 'addr', 'show', 'dev', 'eth0');
  const info = links[0]?.addr_info.find((entry) => entry.local === address);
  if (!info) return undefined;
  return ['tentative', 'dadfailed', 'nodad'].filter((flag) => info[flag] === true);
}

function linkLocalPassed(pod: TestNamespace): boolean {
  const links = pod.ipJson<Array<{ addr_info: Array<Record<string, unknown>> }>>('-6', 'addr', 'show', 'dev', 'eth0');
  return (links[0]?.addr_info ?? []).some((entry) => entry.scope === 'link' && entry.tentative !== true);
}

describe('macvtap detach and duplicate address detection', () => {
  it('puts back a dadfailed address so the kernel finds the duplicate again, and warns at attach', async () => {
    const { pod, node } = podWithDad();
    // The duplicate: the node's end of the link has the pod's address.
    node.exec('ip', ['addr', 'add', 'fd00:92::2/64', 'dev', 'veth0', 'nodad']);
    node.exec('ip', ['link', 'set', 'veth0', 'up']);
    // Until both ends are ready (the pod's link-local passed DAD), the node does not answer.
    await until(() => linkLocalPassed(pod), "the pod link's link-local address to pass DAD", 10_000);
    pod.exec('ip', ['addr', 'add', 'fd00:92::2/64', 'dev', 'eth0']);
    await until(() => flagsOf(pod, 'fd00:92::2')?.includes('dadfailed') === true, 'DAD to fail on the pod', 10_000);
    const notices: NoticeEvent[] = [];
    const listener = (notice: NoticeEvent) => notices.push(notice);
    channels.notice.subscribe(listener);
    const network = openMacvtap(pod);
    try {
      await network.addEndpoints();
    } finally {
      channels.notice.unsubscribe(listener);
    }
    expect(notices.map((notice) => notice.message)).toContainEqual(
      expect.stringMatching(/fd00:92::2\/64 failed duplicate address detection .*the VM gets it as well, a duplicate/),
    );
    expect((await network.removeEndpoints()).failures).toEqual([]);
    // Put back without nodad, the kernel runs DAD and the node answers for the address again.
    await until(
      () => flagsOf(pod, 'fd00:92::2')?.includes('dadfailed') === true,
      'DAD to fail again after detach',
      10_000,
    );
    expect(flagsOf(pod, 'fd00:92::2')).toEqual(['tentative', 'dadfailed']);
  });

  it('puts back an address still tentative (no carrier) tentative, and DAD passes once carrier comes', async () => {
    const { pod, node } = podWithDad();
    pod.exec('ip', ['addr', 'add', 'fd00:93::2/64', 'dev', 'eth0']);
    expect(flagsOf(pod, 'fd00:93::2')).toEqual(['tentative']);
    const network = openMacvtap(pod);
    await network.addEndpoints();
    expect((await network.removeEndpoints()).failures).toEqual([]);
    expect(flagsOf(pod, 'fd00:93::2')).toEqual(['tentative']);
    node.exec('ip', ['link', 'set', 'veth0', 'up']);
    await until(() => flagsOf(pod, 'fd00:93::2')?.length === 0, 'DAD to pass once carrier came', 10_000);
  });
});
