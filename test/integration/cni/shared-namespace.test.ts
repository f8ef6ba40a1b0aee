import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { type CniErrorOutput, CniRuntime, missingCniPlugins } from '../../helpers/cni.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const skipReason =
  process.getuid?.() !== 0 ? 'vcnet-cni integration tests need root (namespaces, taps, tc)' : missingCniPlugins([]);

const stateDirectory = stateDirectoryPerTest('vcnet-state-');
const cniStateDirectory = stateDirectoryPerTest('vcnet-cni-state-');

/** vcnet-cni alone (the interface plugin's work done by makePod), its prevResult naming the interface. */
function vcnetCni(pod: TestNamespace, interfaceName: string, more: Record<string, unknown> = {}) {
  return {
    cniVersion: '1.0.0',
    name: 'shared-ns',
    type: 'vcnet-cni',
    stateDir: cniStateDirectory(),
    ...more,
    prevResult: {
      cniVersion: '1.0.0',
      interfaces: [{ name: interfaceName, sandbox: pod.path }],
      ips: [{ address: '10.200.0.2/24', interface: 0 }],
    },
  };
}

function cni(node: TestNamespace, pod: TestNamespace, containerId: string, interfaceName: string) {
  return new CniRuntime(node, { containerId, namespacePath: pod.path, interfaceName });
}

function cniRecord(containerId: string, interfaceName: string): string {
  return join(cniStateDirectory(), containerId, 'interfaces', interfaceName, 'state.json');
}

function attach(id: string, pod: TestNamespace, ...extra: string[]) {
  return vcnet(['attach', '--sandbox', id, '--netns', pod.path, '--state-dir', stateDirectory(), ...extra]);
}

function detach(id: string, ...extra: string[]) {
  return vcnet(['detach', '--sandbox', id, '--state-dir', stateDirectory(), ...extra]);
}

describe.skipIf(skipReason)('vcnet-cni ADD into a namespace a `vcnet attach` sandbox holds', () => {
  for (const model of ['tcfilter', 'macvtap']) {
    it(`is refused before anything is made, naming the sandbox (${model})`, () => {
      const { pod, node } = makePod({ interfaces: 3 });
      expect(attach('held-sb', pod, '--model', model).status).toBe(0);
      const held = fingerprint(pod);
      const run = cni(node, pod, 'ctr-other', 'eth2').invoke('ADD', vcnetCni(pod, 'eth2', { model }));
      expect(run.status, run.stdout + run.stderr).not.toBe(0);
      const reply = run.output as unknown as CniErrorOutput;
      // VCNET_LINK_NAME_TAKEN is CNI 103, as attach's refusal of a held namespace.
      expect(reply.code).toBe(103);
      expect(reply.msg).toMatch(
        new RegExp(
          `^the namespace ${pod.path} holds the NICs of sandbox held-sb \\(its tap\\d_kata, index \\d+, (tun|macvtap)\\); nothing was changed$`,
        ),
      );
      expect(reply.details).toBe(
        `VCNET_LINK_NAME_TAKEN: one namespace holds one sandbox's NICs: detach sandbox held-sb first (its record: ${join(stateDirectory(), 'held-sb', 'state.json')})`,
      );
      expect(fingerprint(pod)).toEqual(held);
      expect(existsSync(join(cniStateDirectory(), 'ctr-other'))).toBe(false);
      expect(detach('held-sb').status).toBe(0);
    });
  }

  it('refuses another container in a namespace vcnet-cni holds, and lets the same container add a chain', () => {
    const { pod, node } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const first = cni(node, pod, 'ctr-a', 'eth0');
    const added = first.invoke('ADD', vcnetCni(pod, 'eth0'));
    expect(added.status, added.stdout + added.stderr).toBe(0);
    const held = fingerprint(pod);
    const other = cni(node, pod, 'ctr-b', 'eth1').invoke('ADD', vcnetCni(pod, 'eth1'));
    expect(other.status).not.toBe(0);
    const reply = other.output as unknown as CniErrorOutput;
    expect(reply.code).toBe(103);
    expect(reply.msg).toContain(`holds the NICs of vcnet-cni's eth0 of container ctr-a (its tap0_kata, index`);
    expect(reply.details).toContain(
      `the runtime's CNI DEL of container ctr-a (CNI_IFNAME eth0) frees it first (its record: ${cniRecord('ctr-a', 'eth0')})`,
    );
    expect(fingerprint(pod)).toEqual(held);
    // A second chain of the same container (its own record) is not another owner.
    const second = cni(node, pod, 'ctr-a', 'eth1');
    const chained = second.invoke('ADD', vcnetCni(pod, 'eth1'));
    expect(chained.status, chained.stdout + chained.stderr).toBe(0);
    expect(second.invoke('DEL', vcnetCni(pod, 'eth1')).status).toBe(0);
    expect(first.invoke('DEL', vcnetCni(pod, 'eth0')).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe.skipIf(skipReason)('`vcnet attach` into a namespace where vcnet-cni ADD made a tap', () => {
  it('is refused (attach and --dry-run), naming the container and how to free it', () => {
    const { pod, node } = makePod({ interfaces: 2 });
    const runtime = cni(node, pod, 'ctr-cni', 'eth0');
    expect(runtime.invoke('ADD', vcnetCni(pod, 'eth0')).status).toBe(0);
    const held = fingerprint(pod);
    for (const extra of [[], ['--dry-run'], ['--model', 'macvtap']]) {
      const result = attach('late-sb', pod, ...extra);
      expect(result.status, `${extra.join(' ')}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toMatch(
        /a link named tap0_kata is already in the namespace \(index \d+, tun, made by vcnet-cni's eth0 of container ctr-cni\)/,
      );
      expect(result.stderr).toContain(
        `hint: one namespace holds one sandbox's NICs: the runtime's CNI DEL of container ctr-cni (CNI_IFNAME eth0) frees it first (its record: ${cniRecord('ctr-cni', 'eth0')})`,
      );
      expect(fingerprint(pod)).toEqual(held);
      expect(existsSync(join(stateDirectory(), 'late-sb'))).toBe(false);
    }
    expect(runtime.invoke('DEL', vcnetCni(pod, 'eth0')).status).toBe(0);
  });
});
