/**
 * Edges of the waits that commands on a sandbox's VM make without the sandbox's lock (session 31):
 * a run again after the agent's wait, whose QMP connect must not inherit a spent QMP budget; an
 * abort during the agent's wait, which ends it with the caller's reason as an abort during QMP's
 * does; and the library's detachSandbox, whose signal must end its wait for a busy QMP before its
 * locks. The VM is a paused QEMU (QMP answers, the NICs are plugged) behind a relay that counts
 * connections; the guest, where one is needed, is vcnet's agent serving a namespace.
 */
import { describe, expect, it } from 'vitest';
import type { HotplugTarget } from '../../../src/hypervisor/device.js';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import { QemuNetworkHotplugTarget } from '../../../src/hypervisor/qmp-network-hotplug.js';
import { lockFile } from '../../../src/network/state/lock.js';
import { SandboxStore } from '../../../src/network/state/store.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { addInterface } from '../../../src/sandbox/sandbox-interfaces.js';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import {
  addEth9,
  addGuestNic9,
  expectNet1InQemu,
  holdQmp,
  qmpConnectTimeoutHere,
  recordedLinks,
  sandboxesBehindRelay,
  vcnetKilledAfterTest,
} from '../../helpers/held-vm.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, makeConfiguredGuest } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the vm-wait-edges test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-vm-wait-edges-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();
const sandboxBehindRelay = sandboxesBehindRelay(vm, cleanup, stateDirectory);

/** Takes the sandbox's lock and gives it back at once: proof that no command holds it now. */
async function lockIsFree(sandbox: string): Promise<void> {
  const lock = await lockFile(new SandboxStore(sandbox, stateDirectory()).lockPath, 30_000, () => new Error('lock'));
  lock.release();
}

describe.skipIf(skipReason !== undefined)('add-iface whose agent wait outlasts the QMP budget', () => {
  it("plugs the NIC once the agent answers: the run again gets a whole QMP handshake, not what is left of QMP's spent budget", async () => {
    const { pod, node, before, state, qemuQmpPath, agentPath, relay } = await sandboxBehindRelay('ab');
    const guest = makeConfiguredGuest();
    addEth9({ pod, node });
    addGuestNic9(guest, pod);
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });

    // QMP is free all along; the user allows 2 s for a busy one. The agent is not there yet.
    const budgetSeconds = 2;
    const acceptedBefore = relay.accepted();
    const adding = vcnetKilledAfterTest(cleanup, ['add-iface', 'ab', request, ...state], {
      VCNET_QMP_CONNECT_TIMEOUT: String(budgetSeconds),
    });
    await until(() => relay.accepted() > acceptedBefore, "add-iface's QMP connection", 30_000);
    const connectedAt = Date.now();
    // add-iface greeted QMP, tried the agent under the lock, and now waits for it without the lock.
    await lockIsFree('ab');
    expect(adding.child.exitCode, 'add-iface still waiting for the agent').toBeNull();
    // The agent comes once QMP's budget, counted from the first QMP connect, is spent (the agent's
    // own wait, 10 s, is not).
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, connectedAt + budgetSeconds * 1_000 + 500 - Date.now())),
    );
    expect(adding.child.exitCode, 'add-iface still waiting for the agent').toBeNull();
    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
    cleanup.defer(() => agent.stop());
    const added = await adding.done;
    expect(added.stderr).not.toContain('QMP');
    expect(added.status, added.stderr).toBe(0);
    expect(recordedLinks(stateDirectory(), 'ab')).toEqual(['eth0', 'eth9']);
    await expectNet1InQemu(qemuQmpPath);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'ab', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});

describe.skipIf(skipReason !== undefined)(
  "addInterface aborted while it waits for the agent without the sandbox's lock",
  () => {
    it("rejects with the signal's reason (not an agent connect error), and changes nothing", async () => {
      const { pod, node, relay } = await sandboxBehindRelay('aa');
      addEth9({ pod, node });
      const beforeAdd = fingerprint(pod);
      const acceptedBefore = relay.accepted();
      const controller = new AbortController();
      const adding = addInterface('aa', JSON.stringify({ device: 'eth9', name: 'net9' }), {
        stateDirectory: stateDirectory(),
        signal: controller.signal,
      }).then(
        () => new Error('addInterface succeeded'),
        (error: unknown) => error,
      );
      await until(() => relay.accepted() > acceptedBefore, "addInterface's QMP connection", 30_000);
      // The lock is free: addInterface waits for the agent without it. Aborted there, before anything changed.
      await lockIsFree('aa');
      const reason = new Error('the runtime gave up on this add-iface');
      controller.abort(reason);
      expect(await adding).toBe(reason);
      expect(recordedLinks(stateDirectory(), 'aa')).toEqual(['eth0']);
      expect(fingerprint(pod)).toEqual(beforeAdd);
    }, 120_000);
  },
);

describe.skipIf(skipReason !== undefined)(
  'a library watch stopped while a change waits for the agent without the lock',
  () => {
    it('reports no failure: the change is given up as a pending one, nothing changed', async () => {
      const { pod, node, relay } = await sandboxBehindRelay('wa');
      const errors: string[] = [];
      const watching = await watchSandbox('wa', {
        stateDirectory: stateDirectory(),
        debounceMs: 50,
        onError: (error) => errors.push(error.message),
      });
      cleanup.defer(() => watching.stop());
      const acceptedBefore = relay.accepted();
      addEth9({ pod, node });
      const beforeStop = fingerprint(pod);
      await until(() => relay.accepted() > acceptedBefore, "the watch's QMP connection", 30_000);
      // The lock is free: the change waits for the agent without it. Stopped there.
      await lockIsFree('wa');
      await watching.stop();
      expect(errors).toEqual([]);
      expect(recordedLinks(stateDirectory(), 'wa')).toEqual(['eth0']);
      expect(fingerprint(pod)).toEqual(beforeStop);
      pod.exec('ip', ['link', 'del', 'eth9']);
    }, 120_000);
  },
);

describe.skipIf(skipReason !== undefined)("the library's detachSandbox aborted while it waits for a busy QMP", () => {
  it("rejects with the signal's reason while QMP is still held, before its locks, and undoes nothing", async () => {
    const { pod, qemuQmpPath, relay } = await sandboxBehindRelay('da');
    const attached = fingerprint(pod);
    const holder = await holdQmp(cleanup, qemuQmpPath);
    // Longer than this test may take: the abort must not wait for the end of the QMP wait.
    qmpConnectTimeoutHere(cleanup, '600');
    const calls: unknown[] = [];
    const connections: QmpClient[] = [];
    cleanup.defer(() => Promise.all(connections.map((qmp) => qmp.close().catch(() => undefined))));
    const connectHotplug = async (
      state: { hypervisor?: { controlSocket?: string } },
      connect: { qmpHandshakeTimeoutMs: number },
    ): Promise<HotplugTarget> => {
      calls.push(connect);
      const qmp = await QmpClient.connect(state.hypervisor?.controlSocket ?? '', {
        timeoutMs: connect.qmpHandshakeTimeoutMs,
      });
      connections.push(qmp);
      return new QemuNetworkHotplugTarget(qmp, { timeoutMs: 1_000 });
    };
    const acceptedBefore = relay.accepted();
    const controller = new AbortController();
    const detaching = detachSandbox('da', {
      stateDirectory: stateDirectory(),
      connectHotplug,
      signal: controller.signal,
    }).then(
      () => new Error('detachSandbox went ahead'),
      (error: unknown) => error,
    );
    cleanup.defer(async () => {
      await holder.release();
      await detaching;
    });
    await until(() => relay.accepted() > acceptedBefore, "detach's wait for QMP", 30_000);
    const reason = new Error('the runtime gave up on this detach');
    controller.abort(reason);
    const outcome = await Promise.race([
      detaching,
      new Promise((resolve) => setTimeout(resolve, 60_000, 'still waiting for QMP')),
    ]);
    expect(outcome).toBe(reason);
    expect(calls).toEqual([]);
    expect(recordedLinks(stateDirectory(), 'da')).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(attached);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'da', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
  }, 180_000);
});
