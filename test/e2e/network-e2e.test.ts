import { describe, expect, it } from 'vitest';
import { type DemoNamespace, demoUnavailableReason, runDemo } from '../../src/demo/scenario.js';
import { guestUnavailableReason } from '../helpers/guest.js';
import { namespaceView, type TestNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';

function asTestNamespace(namespace: DemoNamespace): TestNamespace {
  return namespaceView(namespace.name, namespace.path, () => undefined);
}

const unavailable = guestUnavailableReason() ?? demoUnavailableReason();
if (unavailable) console.log(`skip VM end-to-end tests: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('a real VM on the pod network', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: agent-configured guest passes traffic, takes a hot-plugged NIC, and the pod is left as CNI made it`, {
      timeout: 240_000,
    }, async () => {
      let cniLeft: unknown;
      let afterTeardown: unknown;
      const result = await runDemo({
        model,
        iperfSeconds: 2,
        progress: (line) => console.log(`[${model}] ${line}`),
        afterCni: (pod) => {
          cniLeft = fingerprint(asTestNamespace(pod));
        },
        afterTeardown: (pod) => {
          afterTeardown = fingerprint(asTestNamespace(pod));
        },
      });
      expect(result.endpoints).toEqual([expect.objectContaining({ name: 'eth0', type: 'virtual', tap: 'tap0_kata' })]);
      expect(result.guest.interfaces[0]?.IPAddresses).toEqual(
        expect.arrayContaining([expect.objectContaining({ address: result.guestAddress, mask: '24' })]),
      );
      expect(result.guest.routes).toEqual([
        expect.objectContaining({ dest: '0.0.0.0/0', gateway: '10.250.0.1', device: 'eth0' }),
      ]);
      // Traffic both ways through the plumbing.
      expect(result.traffic.pingLossPercent).toBe(0);
      expect(result.traffic.iperfToGuestBitsPerSecond).toBeGreaterThan(0);
      expect(result.traffic.iperfFromGuestBitsPerSecond).toBeGreaterThan(0);
      // The hot-plugged NIC: the guest saw it, took its address from the agent, and passed traffic.
      expect(result.hotplug.pciPath).toMatch(/^[0-9a-f]{2}$/);
      expect(result.guestInterfacesSeen).toEqual(expect.arrayContaining(['eth0', 'eth1']));
      expect(result.hotplug.traffic.pingLossPercent).toBe(0);
      expect(result.hotplug.unplugged).toBe(true);
      // Byte for byte what CNI left, as ip -j / tc -j print it.
      expect(afterTeardown).toEqual(cniLeft);
      console.log(
        `[${model}] bench-like figures (not asserted): attach ${result.attachMs.toFixed(1)} ms, guest ready ${(result.bootMs / 1000).toFixed(1)} s, ` +
          `hot-plug host ${result.hotplug.hostMs.toFixed(1)} ms + guest ${result.hotplug.guestMs.toFixed(1)} ms`,
      );
    });
  }
});
