/**
 * The macvtap model gives the pod link back as the kernel would have it had attach never happened:
 * IPv6 addresses that had not passed duplicate address detection at attach (tentative: no carrier
 * yet; dadfailed: another host on the link has the address) go through DAD again, rather than
 * coming back usable with `nodad`; and a link-local address the kernel would have made while the
 * VM had the link (carrier came under it) is there after detach. Real kernel, DAD on (makePod turns
 * it off, so these make their own).
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

/** The EUI-64 link-local address the kernel makes from a MAC (RFC 4291, appendix A). */
function eui64LinkLocal(mac: string): string {
  const bytes = mac.split(':').map((part) => Number.parseInt(part, 16));
  const id = [bytes[0]! ^ 2, bytes[1]!, bytes[2]!, 0xff, 0xfe, bytes[3]!, bytes[4]!, bytes[5]!];
  const groups = [0, 2, 4, 6].map((at) => ((id[at]! << 8) | id[at + 1]!).toString(16));
  return `fe80::${groups.join(':')}`;
}

/** eth0's operational state (RFC 2863), as the kernel's link watch sets it. */
function operationalState(pod: TestNamespace): string | undefined {
  return pod.ipJson<Array<{ operstate: string }>>('link', 'show', 'eth0')[0]?.operstate;
}

function carrier(pod: TestNamespace): boolean {
  return pod.ipJson<Array<{ flags: string[] }>>('link', 'show', 'eth0')[0]!.flags.includes('LOWER_UP');
}

describe('macvtap detach and the IPv6 link-local address', () => {
  it('the pod link has its link-local address after detach when carrier came (and went) while attached', async () => {
    const { pod, node } = podWithDad();
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    const network = openMacvtap(pod);
    await network.addEndpoints();
    // The node's end comes up under the VM (the kernel marks eth0 ready, making nothing: generation
    // is off), and goes down again before detach.
    node.exec('ip', ['link', 'set', 'veth0', 'up']);
    await until(() => carrier(pod), 'carrier on eth0', 10_000);
    // The kernel acts on carrier in its link watch, up to a second later: there it sets the link's
    // operational state, then tells IPv6 the link is ready (what this test is about). Waited for, not
    // a fixed time before carrier goes again.
    await until(() => operationalState(pod) === 'UP', 'eth0 to be operationally up', 10_000);
    node.exec('ip', ['link', 'set', 'veth0', 'down']);
    await until(() => !carrier(pod), 'carrier off eth0', 10_000);
    expect((await network.removeEndpoints()).failures).toEqual([]);
    node.exec('ip', ['link', 'set', 'veth0', 'up']);
    // As without attach: the link-local address from eth0's own MAC, and its fe80::/64 route.
    await until(() => flagsOf(pod, eui64LinkLocal(mac))?.length === 0, "eth0's link-local address", 10_000);
    const routes = pod.ipJson<Array<{ dst: string }>>('-6', 'route', 'show', 'dev', 'eth0');
    expect(routes.map((route) => route.dst)).toContain('fe80::/64');
  });
});
