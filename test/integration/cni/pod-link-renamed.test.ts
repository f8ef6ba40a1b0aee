/**
 * The pod link renamed after vcnet-cni's ADD (by a plugin after it, or a person): the same link
 * (same ifindex) under another name. CHECK fails, as CNI_IFNAME is gone, and says what became of the
 * link rather than only that eth0 is missing; DEL undoes everything on the renamed link (tcfilter:
 * its ingress qdisc and redirect; macvtap: its MAC, addresses and routes back). The chain is the real
 * bridge + host-local before vcnet-cni, for both models that change the pod link.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { bridgeThenVcnet, CniRuntime, missingCniPlugins } from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';

const skipReason =
  process.getuid?.() !== 0 ? 'vcnet-cni integration tests need root (namespaces, taps, tc)' : missingCniPlugins();
if (skipReason) console.log(`skipping the renamed pod link tests: ${skipReason}`);

let workDirectory: string;
beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-renamed-'));
});
afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

interface IpLink {
  ifname: string;
  ifindex: number;
  address: string;
  group: string;
}

function renameLink(pod: TestNamespace, from: string, to: string): void {
  // A veth is renamed down (the kernel refuses to rename a running link on older kernels).
  pod.exec('ip', ['link', 'set', from, 'down']);
  pod.exec('ip', ['link', 'set', from, 'name', to]);
  pod.exec('ip', ['link', 'set', to, 'up']);
}

describe.skipIf(skipReason).each(['tcfilter', 'macvtap'])('the pod link renamed after ADD, model %s', (model) => {
  it('CHECK fails naming the new name of the link ADD attached; DEL undoes everything on it', () => {
    const node = makeNamespace('node');
    const pod = makeNamespace('pod');
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    const stateDirectory = join(workDirectory, 'state');
    const list = bridgeThenVcnet({
      name: `vcnet-renamed-${model}`,
      bridge: 'vcren0',
      subnet: '10.231.60.0/24',
      dataDir: join(workDirectory, 'ipam'),
      vcnet: { stateDir: stateDirectory, model },
    });
    const attachment = {
      containerId: `ctr-${randomBytes(4).toString('hex')}`,
      namespacePath: pod.path,
      interfaceName: 'eth0',
    };
    const runtime = new CniRuntime(node, attachment);
    let macAfterBridge = '';
    const result = runtime.add(list, (position) => {
      if (position === 0) macAfterBridge = pod.ipJson<IpLink[]>('link', 'show', 'eth0')[0]!.address;
    });
    const { ifindex } = pod.ipJson<IpLink[]>('link', 'show', 'eth0')[0]!;
    renameLink(pod, 'eth0', 'net9');

    const vcnetConfig = { ...list.plugins[1], cniVersion: list.cniVersion, name: list.name, prevResult: result };
    const checked = runtime.invoke('CHECK', vcnetConfig);
    expect(checked.output).toMatchObject({ code: 105 });
    expect(String(checked.output?.msg)).toContain(
      `eth0 is missing: the link ADD attached (ifindex ${ifindex}) is named net9 now`,
    );
    // ADD's qdisc and filter are still on the link under its new name: not said to be missing.
    expect(String(checked.output?.msg)).not.toMatch(/(qdisc|filter).* is missing/);

    const deleted = runtime.invoke('DEL', vcnetConfig);
    expect(deleted.status, deleted.stdout + deleted.stderr).toBe(0);
    const links = pod.ipJson<IpLink[]>('-d', 'link', 'show');
    expect(links.filter((link) => link.group === String(VCNET_LINK_GROUP) || link.group === '0x7663')).toEqual([]);
    expect(pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'net9').map((qdisc) => qdisc.kind)).toEqual([
      'noqueue',
    ]);
    const renamed = links.find((link) => link.ifname === 'net9')!;
    expect(renamed.ifindex).toBe(ifindex);
    expect(renamed.address).toBe(macAfterBridge);
    expect(pod.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'net9'])).toMatch(/10\.231\.60\.\d+\/24 .* net9/);
    expect(existsSync(join(stateDirectory, attachment.containerId))).toBe(false);
  });
});
