/**
 * The macvtap model and IPv6, against the real kernel: what reaches the VM's /dev/tapN (read here as
 * QEMU would), and pod links too small for IPv6.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Network } from '../../../src/network/network.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { CniRuntime, type Conflist, missingCniPlugins } from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const networks: Network[] = [];

function openMacvtap(namespace: TestNamespace): Network {
  const network = Network.open({
    namespacePath: namespace.path,
    model: 'macvtap',
    namespaceCreatedByVcnet: false,
    disableNewNetns: false,
    queues: 1,
    vhostNet: 'auto',
  });
  networks.push(network);
  return network;
}

const directories: string[] = [];
const stateDirectory = stateDirectoryPerTest('vcnet-macvtap-v6-');

afterEach(() => {
  for (const network of networks.splice(0)) network.close();
  cleanupNamespaces();
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** The destination MACs of the frames queued on a macvtap fd (each after its 10-byte virtio-net header). */
function queuedDestinations(fd: number): string[] {
  const destinations: string[] = [];
  const buffer = Buffer.alloc(65_536);
  for (;;) {
    let length: number;
    try {
      length = readSync(fd, buffer);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return destinations;
      throw error;
    }
    if (length < 16) return destinations;
    const mac = buffer.subarray(10, 16);
    destinations.push([...mac].map((byte) => byte.toString(16).padStart(2, '0')).join(':'));
  }
}

describe('macvtap and IPv6 neighbour discovery', () => {
  it("passes neighbour solicitations for the guest's addresses to the VM (allmulticast), and detach takes it away", async () => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const network = openMacvtap(pod);
    await network.addEndpoints();
    const macvtap = pod.ipJson<Array<{ ifindex: number; flags: string[] }>>('link', 'show', 'tap0_kata')[0]!;
    expect(macvtap.flags).toContain('ALLMULTI');
    // The VM's end, as QEMU opens it; nonblocking so an empty queue answers EAGAIN.
    const fd = openSync(`/dev/tap${macvtap.ifindex}`, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      queuedDestinations(fd);
      // The node asks for the guest's fd00:200::2: a solicitation to its solicited-node group.
      node.exec('ip', ['addr', 'add', 'fd00:200::1/64', 'dev', 'veth0', 'nodad']);
      // No VM answers, so the ping fails; the solicitation is what counts.
      expect(() => node.exec('ping', ['-6', '-c', '1', '-W', '1', 'fd00:200::2'])).toThrow();
      expect(queuedDestinations(fd)).toContain('33:33:ff:00:00:02');
    } finally {
      closeSync(fd);
    }
    expect((await network.removeEndpoints()).failures).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('macvtap on a pod link below IPv6 minimum MTU', () => {
  it.each([576, 68])('attaches at MTU %i (no IPv6 generation mode to set) and detaches exactly', async (mtu) => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', String(mtu)]);
    const before = fingerprint(pod);
    const network = openMacvtap(pod);
    await network.addEndpoints();
    expect(pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap0_kata')[0]!.mtu).toBe(mtu);
    expect((await network.removeEndpoints()).failures).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });
});

/** The IPv6 addresses of a namespace with their flags (nodad, tentative, noprefixroute...), by link. */
function ipv6Addresses(namespace: TestNamespace): Record<string, unknown> {
  return Object.fromEntries(
    namespace
      .ipJson<Array<{ ifname: string; addr_info: Array<Record<string, unknown>> }>>('-6', 'addr', 'show')
      .map((entry) => [
        entry.ifname,
        entry.addr_info.map(({ valid_life_time: _v, preferred_life_time: _p, ...info }) => info),
      ]),
  );
}

const ptpMissing = missingCniPlugins(['ptp', 'host-local']);
if (ptpMissing) console.log(`macvtap-ipv6: skipping the two cases of a ptp-made pod: ${ptpMissing}`);

/** A pod made by the ptp plugin with an IPv6 range, DAD on (ptp waits for it), as a node has it. */
function ptpPod(): { pod: TestNamespace; remove(): void } {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  const dataDir = mkdtempSync(join(tmpdir(), 'vcnet-ptp6-'));
  directories.push(dataDir);
  const list: Conflist = {
    cniVersion: '1.0.0',
    name: 'vcnet-ptp6',
    plugins: [
      {
        type: 'ptp',
        ipMasq: false,
        ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: 'fd00:12b::/64' }]], routes: [{ dst: '::/0' }] },
      },
    ],
  };
  const containerId = `ctr-${randomBytes(4).toString('hex')}`;
  const runtime = new CniRuntime(node, { containerId, namespacePath: pod.path, interfaceName: 'eth0' });
  runtime.add(list);
  // As ptp leaves it: routes with the address as src, and no prefix route of the address.
  const routes = pod.exec('ip', ['-6', 'route', 'show']);
  expect(routes).toMatch(/fd00:12b::\/64 via fd00:12b::1 dev eth0 .*src fd00:12b::2/);
  expect(routes).not.toMatch(/fd00:12b::\/64 dev eth0 proto kernel/);
  return { pod, remove: () => runtime.del(list) };
}

describe('macvtap on an IPv6 ptp pod (real CNI plugins, DAD on)', () => {
  it.skipIf(ptpMissing)(
    'detaches exactly: addresses usable at once for the src routes, their flags and no prefix route ptp had deleted',
    async () => {
      const { pod, remove } = ptpPod();
      const before = fingerprint(pod);
      const addressesBefore = ipv6Addresses(pod);
      const network = openMacvtap(pod);
      await network.addEndpoints();
      const report = await network.removeEndpoints();
      expect(report.failures).toEqual([]);
      expect(fingerprint(pod)).toEqual(before);
      expect(ipv6Addresses(pod)).toEqual(addressesBefore);
      remove();
    },
  );

  it.skipIf(ptpMissing)('detach --dry-run pasted into sh -e puts the pod back exactly too', () => {
    const { pod, remove } = ptpPod();
    const before = fingerprint(pod);
    const addressesBefore = ipv6Addresses(pod);
    const state = ['--sandbox', 'ptp6', '--state-dir', stateDirectory()];
    const attach = vcnet(['attach', '--netns', pod.path, '--model', 'macvtap', ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    const dry = vcnet(['detach', '--dry-run', ...state]);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('ip address add fd00:12b::2/64 scope 0 nodad dev eth0');
    execFileSync('ip', ['netns', 'exec', pod.name, 'sh', '-e'], { input: dry.stdout, encoding: 'utf8' });
    expect(fingerprint(pod)).toEqual(before);
    expect(ipv6Addresses(pod)).toEqual(addressesBefore);
    const detach = vcnet(['detach', ...state]);
    expect(detach.status, detach.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    expect(ipv6Addresses(pod)).toEqual(addressesBefore);
    remove();
  });
});
