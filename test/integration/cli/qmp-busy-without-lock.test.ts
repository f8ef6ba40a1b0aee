/**
 * Commands on a sandbox whose QEMU serves another QMP client (a runtime, a monitoring tool): QEMU
 * greets one client at a time, and vcnet waits for its turn (VCNET_QMP_CONNECT_TIMEOUT). `vcnet
 * watch` used to wait holding the sandbox lock, so every other command on the sandbox (list-ifaces
 * here) timed out on the lock although nothing was wrong; it now waits without the lock and plugs
 * the NIC once QMP is free. `vcnet detach` gave QMP 3 s under its locks and then removed the taps
 * without unplugging the NICs; it now waits without the locks, as long as VCNET_QMP_CONNECT_TIMEOUT
 * says when it is set.
 */
import { createServer, type Socket } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { InterfaceSchema } from '../../../src/agent/generated/types_pb.js';
import { createAgentServer } from '../../../src/agent/server.js';
import type { HotplugTarget } from '../../../src/hypervisor/device.js';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import { QemuNetworkHotplugTarget } from '../../../src/hypervisor/qmp-network-hotplug.js';
import { VMM_WAIT_WITHOUT_LOCKS_MS } from '../../../src/network/sandbox-vmm-wait.js';
import { lockFile } from '../../../src/network/state/lock.js';
import { SandboxStore } from '../../../src/network/state/store.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { addInterface } from '../../../src/sandbox/sandbox-interfaces.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { shortWaits, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import {
  addEth9,
  eth9ToAdd,
  expectListIfacesAnswers,
  expectNet1InQemu,
  holdQmp,
  qmpConnectTimeoutHere,
  recordedLinks,
  sandboxesBehindRelay,
  serveSilentAgent,
  vcnetKilledAfterTest,
  vcnetWaitingForQmp,
} from '../../helpers/held-vm.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { untilInfoNetwork } from '../../helpers/qmp-look.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the watch-with-QMP-busy test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-watch-qmp-busy-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();
const sandboxBehindRelay = sandboxesBehindRelay(vm, cleanup, stateDirectory);

/**
 * `sandbox` behind the relay (plain, or `mode` '+take'), with an agent that never answers (an
 * add-iface waits for it after the plug) and eth9 in its pod; `request`: the add-iface of eth9.
 */
async function sandboxWithEth9ToAdd(sandbox: string, mode?: '+take') {
  const sandboxed = await sandboxBehindRelay(sandbox, mode);
  return { ...sandboxed, ...(await eth9ToAdd(cleanup, stateDirectory(), sandboxed)) };
}

/**
 * `vcnet watch` of `sandbox` (--debounce `debounceMs`, VCNET_QMP_CONNECT_TIMEOUT `qmpWaitSeconds`)
 * once it said it watches; killed after the test if still running.
 */
async function watchStarted(sandbox: string, debounceMs: string, qmpWaitSeconds: string) {
  const watch = vcnetKilledAfterTest(
    cleanup,
    ['watch', '--sandbox', sandbox, '--debounce', debounceMs, '--state-dir', stateDirectory()],
    { VCNET_QMP_CONNECT_TIMEOUT: qmpWaitSeconds },
  );
  await until(() => watch.output().stderr.includes(`watching sandbox ${sandbox}`), 'the watch to start', 15_000);
  return watch;
}

/**
 * The VM goes, and the silent agent's connections with it: add-iface's wait for the agent (`adding`)
 * ends, the host side of eth9 undone. detach removes what is left: the pod, eth9 deleted, is as it
 * was before the attach.
 */
async function detachOnceQemuStops(
  sandbox: string,
  { pod, before, state }: Pick<Awaited<ReturnType<typeof sandboxBehindRelay>>, 'pod' | 'before' | 'state'>,
  adding: { done: Promise<unknown> },
  agentConnections: Socket[],
): Promise<void> {
  await vm.stopQemu();
  for (const socket of agentConnections) socket.destroy();
  await adding.done;
  const detached = vcnet(['detach', '--sandbox', sandbox, ...state]);
  expect(detached.status, detached.stderr).toBe(0);
  pod.exec('ip', ['link', 'del', 'eth9']);
  expect(fingerprint(pod)).toEqual(before);
}

/**
 * While `waiting` (a vcnet command) waits for QMP, list-ifaces of its sandbox answers: the wait holds
 * no sandbox lock. Nothing of the new link is recorded yet.
 */
async function expectListIfacesAnswersMeanwhile(sandbox: string, waiting: { exitCode: number | null }): Promise<void> {
  await expectListIfacesAnswers(stateDirectory(), sandbox, '10');
  expect(waiting.exitCode, 'still waiting for QMP').toBeNull();
  expect(recordedLinks(stateDirectory(), sandbox)).toEqual(['eth0']);
}

describe.skipIf(skipReason !== undefined)('watch while another client holds QMP', () => {
  it('waits for QMP without the sandbox lock: list-ifaces goes through meanwhile; the NIC is plugged once QMP is free', async () => {
    const { pod, node, before, state, qemuQmpPath, agentPath, relay } = await sandboxBehindRelay('wq');
    // An agent that takes connections and never answers: the watch's push waits for it, after the plug.
    const agentConnections = await serveSilentAgent(cleanup, agentPath);

    // The watch may wait a minute for QMP; the other command waits 10 s for the sandbox lock.
    const watch = await watchStarted('wq', '50', '60');

    // Another client (a runtime, a monitor) holds QEMU's QMP: the next one gets no greeting until it closes.
    const holder = await holdQmp(cleanup, qemuQmpPath);
    const acceptedBefore = relay.accepted();
    addEth9({ pod, node });
    // The watch read the new link and connected to QMP: it waits for QEMU's greeting now.
    await until(() => relay.accepted() > acceptedBefore, "the watch's QMP connection", 30_000);

    await expectListIfacesAnswersMeanwhile('wq', watch.child);

    // QMP free: the watch attaches eth9 and plugs its NIC (net1), then waits for the agent.
    await holder.release();
    await expectNet1InQemu(qemuQmpPath);
    await until(() => recordedLinks(stateDirectory(), 'wq').includes('eth9'), 'eth9 recorded', 15_000);

    // The VM goes; the agent's connections with it: the watch stops, detach removes what is left.
    await vm.stopQemu();
    for (const socket of agentConnections) socket.destroy();
    watch.child.kill('SIGTERM');
    await watch.done;
    const detached = vcnet(['detach', '--sandbox', 'wq', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});

describe.skipIf(skipReason !== undefined)('detach while another client holds QMP', () => {
  it('waits for QMP as VCNET_QMP_CONNECT_TIMEOUT says, without the locks, and unplugs the NIC once QMP is free', async () => {
    const { pod, before, state, qemuQmpPath, qmpPath, relay } = await sandboxBehindRelay('dq');
    const holder = await holdQmp(cleanup, qemuQmpPath);
    // The paused VM never releases the NIC: detach's 10 s wait for it is only sat out here
    // (detach-running-vm.test.ts keeps it whole).
    const detaching = await vcnetWaitingForQmp(
      cleanup,
      ['detach', '--sandbox', 'dq', ...state],
      relay,
      '60',
      shortWaits({ unplugMs: 1_000 }),
    );
    // Meanwhile the sandbox is not locked: list-ifaces answers (the recorded view: no agent listens).
    await expectListIfacesAnswers(stateDirectory(), 'dq', '10');
    // The wait detach used to give QMP (VMM_WAIT_WITHOUT_LOCKS_MS, then the taps went without an
    // unplug), begun after detach's own and seen to end: detach, waiting as VCNET_QMP_CONNECT_TIMEOUT
    // says, still waits.
    await expect(QmpClient.connect(qemuQmpPath, { timeoutMs: VMM_WAIT_WITHOUT_LOCKS_MS })).rejects.toThrow(
      `no greeting from QEMU within ${VMM_WAIT_WITHOUT_LOCKS_MS} ms`,
    );
    expect(detaching.child.exitCode).toBeNull();
    await holder.release();
    const detached = await detaching.done;
    expect(detached.status, detached.stderr).toBe(0);
    // The NIC was asked to go: QMP answered detach (the paused VM has no guest to release it).
    expect(detached.stderr).toContain(`sandbox dq's VM is still running (its control socket ${qmpPath} answers)`);
    expect(detached.stderr).not.toContain('is still open');
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);
});

describe.skipIf(skipReason !== undefined)('add-iface while another client holds QMP', () => {
  it('waits for QMP without the sandbox lock: list-ifaces goes through meanwhile; the NIC is plugged once QMP is free', async () => {
    const { pod, before, state, qemuQmpPath, relay, agentConnections, request } = await sandboxWithEth9ToAdd('aq');
    const holder = await holdQmp(cleanup, qemuQmpPath);
    const adding = await vcnetWaitingForQmp(cleanup, ['add-iface', 'aq', request, ...state], relay, '60');
    await expectListIfacesAnswersMeanwhile('aq', adding.child);

    await holder.release();
    await expectNet1InQemu(qemuQmpPath);
    expect(recordedLinks(stateDirectory(), 'aq')).toEqual(['eth0', 'eth9']);

    // The VM goes; add-iface's wait for the agent ends with it (the host side of eth9 undone).
    await detachOnceQemuStops('aq', { pod, before, state }, adding, agentConnections);
  }, 180_000);
});

describe.skipIf(skipReason !== undefined)('add-iface while QMP stays held past its wait', () => {
  it('fails without the lock held, naming the sandbox, the socket and how to find its holder; nothing is changed', async () => {
    const { pod, state, qemuQmpPath, qmpPath, relay, request } = await sandboxWithEth9ToAdd('bq');
    const beforeAdd = fingerprint(pod);
    await holdQmp(cleanup, qemuQmpPath);
    const adding = await vcnetWaitingForQmp(cleanup, ['add-iface', 'bq', request, ...state], relay, '8');
    await expectListIfacesAnswers(stateDirectory(), 'bq', '10');
    const failed = await adding.done;
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain(`QMP handshake on ${qmpPath}: no greeting from QEMU`);
    // The time measured (it said the budget, "8000 ms in all, only the first 1000 ms of it under the sandbox's lock").
    const inAll =
      /\(sandbox bq's VM: no greeting within (\d+) ms in all, (\d+) ms of it under the sandbox's lock \(at most 1000 ms\), the rest without it\)/.exec(
        failed.stderr,
      );
    expect(inAll, failed.stderr).not.toBeNull();
    expect(Number(inAll?.[1])).toBeGreaterThanOrEqual(8000);
    expect(failed.stderr).toContain(`ss -xp | grep ${qmpPath}`);
    expect(failed.stderr).toContain("without holding the sandbox's lock");
    expect(failed.stderr).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds>');
    expect(recordedLinks(stateDirectory(), 'bq')).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(beforeAdd);
  }, 120_000);
});

describe.skipIf(skipReason !== undefined)('add-iface while another client takes QMP after its check', () => {
  it('plugs on the connection it checked QMP with: a client taking QMP once that check is done does not come between', async () => {
    // Takes QMP the moment add-iface's first connection (its check under the lock) closes.
    const { pod, before, state, qemuQmpPath, relay, agentConnections, request } = await sandboxWithEth9ToAdd(
      'tq',
      '+take',
    );
    let taken = false;
    cleanup.defer(() => {
      if (taken) relay.letGo();
    });
    const adding = vcnetKilledAfterTest(cleanup, ['add-iface', 'tq', request, ...state], {
      VCNET_QMP_CONNECT_TIMEOUT: '60',
    });
    await until(() => relay.output().includes('\ntaken\n'), "the other client's hold of QMP", 60_000);
    taken = true;
    // The relay printed what client 1 sent before it saw it go: the NIC went in on the check's connection.
    const firstClient = relay
      .output()
      .split('\n')
      .filter((line) => line.startsWith('1> '));
    expect(firstClient).toContain('1> device_add');
    expect(firstClient).toContain('1> netdev_add');
    relay.letGo();
    taken = false;
    await expectNet1InQemu(qemuQmpPath);
    expect(recordedLinks(stateDirectory(), 'tq')).toEqual(['eth0', 'eth9']);
    // The VM goes; add-iface's wait for the agent ends with it (the host side of eth9 undone).
    await detachOnceQemuStops('tq', { pod, before, state }, adding, agentConnections);
  }, 180_000);
});

describe.skipIf(skipReason !== undefined)('del-iface while another client takes QMP after its check', () => {
  it('unplugs on the connection it checked QMP with: a client taking QMP once that check is done does not come between', async () => {
    // Takes QMP the moment del-iface's first connection (its check under the lock) closes.
    const { pod, before, state, agentPath, relay } = await sandboxBehindRelay('uq', '+take');
    await vm.listenAgent(agentPath);
    let taken = false;
    cleanup.defer(() => {
      if (taken) relay.letGo();
    });
    const request = writeRequest(stateDirectory(), 'del.json', { name: 'eth0' });
    // The paused VM never releases the NIC: del-iface's 20 s wait for it is only sat out here
    // (del-iface-vm-keeps-nic.test.ts keeps it whole).
    const removing = vcnetKilledAfterTest(
      cleanup,
      ['del-iface', 'uq', request, ...state],
      shortWaits({ unplugMs: 1_000 }, { VCNET_QMP_CONNECT_TIMEOUT: '60' }),
    );
    await until(() => relay.output().includes('\ntaken\n'), "the other client's hold of QMP", 60_000);
    taken = true;
    // The relay printed what client 1 sent before it saw it go: the unplug went on the check's connection.
    const firstClient = relay
      .output()
      .split('\n')
      .filter((line) => line.startsWith('1> '));
    expect(firstClient).toContain('1> device_del');
    relay.letGo();
    taken = false;
    // The paused VM never ejects the NIC: del-iface says so and keeps the interface for a later try.
    const removed = await removing.done;
    expect(removed.status).toBe(1);
    expect(removed.stderr).toMatch(/net0 is still in the VM/);
    expect(recordedLinks(stateDirectory(), 'uq')).toEqual(['eth0']);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'uq', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});

/**
 * A runtime's connectHotplug for the library's detachSandbox, written as before detach told it a
 * bound: it connects with what detach gives (QmpClient.connect's default when nothing), and
 * counts its calls and the NICs it was asked to unplug. Its connections close after the test.
 */
function runtimeConnectHotplug() {
  const connections: QmpClient[] = [];
  const calls: unknown[] = [];
  const unplugged: string[] = [];
  cleanup.defer(() => Promise.all(connections.map((qmp) => qmp.close().catch(() => undefined))));
  const connectHotplug = async (
    state: { hypervisor?: { controlSocket?: string } },
    ...given: unknown[]
  ): Promise<HotplugTarget> => {
    calls.push(given[0]);
    const bound = (given[0] as { qmpHandshakeTimeoutMs?: number } | undefined)?.qmpHandshakeTimeoutMs;
    const qmp = await QmpClient.connect(state.hypervisor?.controlSocket ?? '', bound ? { timeoutMs: bound } : {});
    connections.push(qmp);
    const target = new QemuNetworkHotplugTarget(qmp, { timeoutMs: 1_000 });
    return {
      hotplugNetworkDevice: (device) => target.hotplugNetworkDevice(device),
      unplugNetworkDevice: (id) => {
        unplugged.push(id);
        return target.unplugNetworkDevice(id);
      },
    };
  };
  return { connectHotplug, calls, unplugged };
}

describe.skipIf(skipReason !== undefined)("the library's detachSandbox while another client holds QMP", () => {
  it('waits for QMP without its locks before connectHotplug: list-ifaces answers meanwhile; the NIC is unplugged once QMP is free', async () => {
    const { pod, before, qemuQmpPath, relay } = await sandboxBehindRelay('lq');
    const holder = await holdQmp(cleanup, qemuQmpPath);
    qmpConnectTimeoutHere(cleanup, '60');
    const runtime = runtimeConnectHotplug();
    const acceptedBefore = relay.accepted();
    let settled = false;
    const detaching = detachSandbox('lq', { stateDirectory: stateDirectory(), connectHotplug: runtime.connectHotplug });
    detaching.then(
      () => (settled = true),
      () => (settled = true),
    );
    cleanup.defer(() => detaching.catch(() => undefined));
    await until(() => relay.accepted() > acceptedBefore, "detach's QMP connection", 30_000);
    await expectListIfacesAnswers(stateDirectory(), 'lq', '10');
    expect(settled, 'detach still waiting for QMP').toBe(false);
    await holder.release();
    const result = await detaching;
    expect(result.found).toBe(true);
    // Called once QMP was free, told a short bound: QMP was waited for before the locks.
    expect(runtime.calls).toEqual([{ qmpHandshakeTimeoutMs: 1_000 }]);
    expect(runtime.unplugged).toEqual(['net0']);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);

  it('gives its locks back when another client takes QMP between its wait and connectHotplug, waits again and runs again', async () => {
    // Takes QMP the moment detach's first connection (its wait without the locks) closes.
    const { pod, before, relay } = await sandboxBehindRelay('rq', '+take');
    let taken = false;
    cleanup.defer(() => {
      if (taken) relay.letGo();
    });
    qmpConnectTimeoutHere(cleanup, '60');
    const runtime = runtimeConnectHotplug();
    let settled = false;
    const detaching = detachSandbox('rq', { stateDirectory: stateDirectory(), connectHotplug: runtime.connectHotplug });
    detaching.then(
      () => (settled = true),
      () => (settled = true),
    );
    cleanup.defer(() => detaching.catch(() => undefined));
    await until(() => relay.output().includes('\ntaken\n'), "the other client's hold of QMP", 30_000);
    taken = true;
    // connectHotplug's connect under the locks (client 2) finds QMP taken: the locks go back, and
    // detach waits again without them (client 3, behind the holder in QEMU's queue).
    await until(() => relay.accepted() >= 3, "detach's wait after its connect under the locks", 30_000);
    await expectListIfacesAnswers(stateDirectory(), 'rq', '10');
    expect(settled, 'detach still waiting for QMP').toBe(false);
    relay.letGo();
    taken = false;
    const result = await detaching;
    expect(result.found).toBe(true);
    expect(runtime.calls).toEqual([{ qmpHandshakeTimeoutMs: 1_000 }, { qmpHandshakeTimeoutMs: 1_000 }]);
    // The run that found QMP free unplugged the NIC: the first changed nothing.
    expect(runtime.unplugged).toEqual(['net0']);
    expect(fingerprint(pod)).toEqual(before);
  }, 120_000);
});

describe.skipIf(skipReason !== undefined)('add-iface whose sandbox lock was taken while it waited for QMP', () => {
  it('gets its turn at a free QMP under the lock even when the lock wait used up the QMP budget', async () => {
    const { pod, before, state, qemuQmpPath, relay, agentConnections, request } = await sandboxWithEth9ToAdd('lq');
    const holder = await holdQmp(cleanup, qemuQmpPath);
    const budgetSeconds = 3;
    // add-iface connected under the sandbox lock; it gives the lock back once QMP did not greet.
    const adding = await vcnetWaitingForQmp(
      cleanup,
      ['add-iface', 'lq', request, ...state],
      relay,
      String(budgetSeconds),
      { VCNET_LOCK_TIMEOUT: '60' },
    );
    const connectedAt = Date.now();
    // Another command (here this test) takes the sandbox lock meanwhile and holds it past add-iface's
    // QMP budget; QMP is free long before that lock is given back.
    const lock = await lockFile(new SandboxStore('lq', stateDirectory()).lockPath, 30_000, () => new Error('lock'));
    try {
      await holder.release();
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, connectedAt + budgetSeconds * 1_000 + 1_000 - Date.now())),
      );
      expect(adding.child.exitCode, 'add-iface waits for the sandbox lock').toBeNull();
    } finally {
      lock.release();
    }
    // QMP is free: add-iface, with the lock again, connects and plugs the NIC, as it would have had
    // the lock been free at once.
    const plugged = untilInfoNetwork(qemuQmpPath, (text) => text.includes('netdev-net1'), 'net1 in QEMU', {
      timeoutMs: 60_000,
      handshakeTimeoutMs: 15_000,
    }).then(
      () => 'plugged',
      (error: Error) => `never plugged: ${error.message}`,
    );
    const outcome = await Promise.race([
      plugged,
      adding.done.then((done) => `add-iface exited ${done.status}: ${done.stderr}`),
    ]);
    expect(outcome).toBe('plugged');
    // The VM goes; add-iface's wait for the agent ends with it (the host side of eth9 undone).
    await detachOnceQemuStops('lq', { pod, before, state }, adding, agentConnections);
  }, 180_000);
});

/**
 * An agent that answers every network request as done (the paused VM has no guest to do it): a watch's
 * push goes through, so its change is reported.
 */
async function serveAgreeingAgent(path: string): Promise<void> {
  const agent = createAgentServer({
    updateInterface: async (update) =>
      create(InterfaceSchema, {
        hwAddr: update.hardwareAddress,
        name: update.name ?? '',
        mtu: BigInt(update.mtu ?? 0),
      }),
    updateRoutes: async () => [],
    addArpNeighbors: async () => undefined,
    listInterfaces: async () => [],
    listRoutes: async () => [],
  });
  const connections: Socket[] = [];
  const server = createServer((socket) => {
    connections.push(socket);
    agent.serve(socket);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanup.defer(async () => {
    for (const socket of connections) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}

describe.skipIf(skipReason !== undefined)('watch of a change with a MAC change while another client holds QMP', () => {
  it("reports the MAC change in the change's JSON line after waiting for QMP without the lock", async () => {
    const { pod, node, state, qemuQmpPath, agentPath, endpoint, relay } = await sandboxBehindRelay('mq');
    await serveAgreeingAgent(agentPath);
    const watch = await watchStarted('mq', '1000', '60');
    const holder = await holdQmp(cleanup, qemuQmpPath);
    const acceptedBefore = relay.accepted();
    // One change: eth0 gets another MAC than its guest NIC's, and eth9 comes.
    const podMac = endpoint.hwAddr.toLowerCase() === '02:00:00:00:09:09' ? '02:00:00:00:09:0a' : '02:00:00:00:09:09';
    pod.exec('ip', ['link', 'set', 'eth0', 'address', podMac]);
    addEth9({ pod, node });
    await until(() => relay.accepted() > acceptedBefore, "the watch's QMP connection", 30_000);
    // Given back the lock after its first connect: the change is applied again from the start with QMP.
    await until(() => relay.accepted() > acceptedBefore + 1, "the watch's wait for QMP without the lock", 30_000);
    await holder.release();
    await until(() => watch.output().stdout.includes('"added"'), "the change's JSON line", 60_000);
    const line = JSON.parse(
      watch
        .output()
        .stdout.split('\n')
        .find((text) => text.includes('"added"'))!,
    );
    expect(line.added).toEqual(['eth9']);
    expect(line.macChanges, watch.output().stderr).toEqual([
      expect.objectContaining({ link: 'eth0', podMac, guestMac: endpoint.hwAddr.toLowerCase() }),
    ]);
    // Said once on stderr, the rerun included.
    expect(watch.output().stderr.split(`eth0's MAC changed to ${podMac}`).length - 1).toBe(1);

    watch.child.kill('SIGTERM');
    await watch.done;
    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'mq', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
  }, 180_000);
});

describe.skipIf(skipReason !== undefined)(
  "addInterface aborted while it waits for QMP without the sandbox's lock",
  () => {
    it("rejects with the signal's reason while QMP is still held, and changes nothing", async () => {
      const { pod, qemuQmpPath, relay } = await sandboxWithEth9ToAdd('sq');
      const beforeAdd = fingerprint(pod);
      await holdQmp(cleanup, qemuQmpPath);
      const acceptedBefore = relay.accepted();
      qmpConnectTimeoutHere(cleanup, '30');
      const controller = new AbortController();
      const adding = addInterface('sq', JSON.stringify({ device: 'eth9', name: 'net9' }), {
        stateDirectory: stateDirectory(),
        signal: controller.signal,
      }).then(
        () => new Error('addInterface succeeded'),
        (error: unknown) => error,
      );
      // The connect under the lock, then the wait without it: aborted there, before anything changed.
      await until(() => relay.accepted() > acceptedBefore + 1, "addInterface's wait for QMP without the lock", 30_000);
      const reason = new Error('the runtime gave up on this add-iface');
      controller.abort(reason);
      expect(await adding).toBe(reason);
      expect(recordedLinks(stateDirectory(), 'sq')).toEqual(['eth0']);
      expect(fingerprint(pod)).toEqual(beforeAdd);
    }, 120_000);
  },
);

describe.skipIf(skipReason !== undefined)('watch stopped while a change waits for QMP without the lock', () => {
  it('ends within its stop bound, the change not applied, while QMP is still held', async () => {
    const { pod, node, qemuQmpPath, relay } = await sandboxBehindRelay('tq');
    // Longer than this test may take: the watch's stop must not wait for the end of the QMP wait.
    const watch = await watchStarted('tq', '50', '600');
    await holdQmp(cleanup, qemuQmpPath);
    const acceptedBefore = relay.accepted();
    addEth9({ pod, node });
    const beforeStop = fingerprint(pod);
    await until(() => relay.accepted() > acceptedBefore + 1, "the watch's wait for QMP without the lock", 30_000);
    watch.child.kill('SIGTERM');
    const stopped = await watch.done;
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stderr).not.toContain('could not apply');
    expect(stopped.stderr).toContain('watch ended before the last namespace change was applied');
    // The product's whole bound, which a test that only sits it out would shorten (shortWaits).
    expect(stopped.stderr).toContain('watch ended before the last namespace change was applied (10 s)');
    expect(recordedLinks(stateDirectory(), 'tq')).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(beforeStop);
    pod.exec('ip', ['link', 'del', 'eth9']);
  }, 90_000);
});

describe.skipIf(skipReason !== undefined)(
  'watch whose sandbox is detached and attached again while a change waits for QMP',
  () => {
    it("ends without applying the change to the new attach's record and plumbing", async () => {
      const other = makePod();
      const otherBefore = fingerprint(other.pod);
      const { pod, state, qemuQmpPath, relay } = await sandboxBehindRelay('wq');
      const watch = await watchStarted('wq', '50', '60');
      const holder = await holdQmp(cleanup, qemuQmpPath);
      const acceptedBefore = relay.accepted();
      // The change: eth0 goes from the watched pod, whose NIC the watch must unplug through QMP.
      pod.exec('ip', ['link', 'del', 'eth0']);
      await until(() => relay.accepted() > acceptedBefore + 1, "the watch's wait for QMP without the lock", 30_000);
      // Meanwhile the sandbox is detached and attached again under the same id, in another pod.
      const detached = await vcnetAsync(['detach', '--sandbox', 'wq', ...state]).done;
      expect(detached.status, detached.stderr).toBe(0);
      const attached = vcnet(['attach', '--sandbox', 'wq', '--netns', other.pod.path, ...state]);
      expect(attached.status, attached.stderr).toBe(0);
      const otherAttached = fingerprint(other.pod);
      await holder.release();
      const ended = await Promise.race([
        watch.done.then((done) => `exited ${done.status}`),
        new Promise((resolve) => setTimeout(resolve, 60_000, 'still running')),
      ]);
      // The new attach's eth0 (its own pod link of that name) is still attached, its plumbing whole.
      expect(recordedLinks(stateDirectory(), 'wq')).toEqual(['eth0']);
      expect(fingerprint(other.pod)).toEqual(otherAttached);
      expect(ended, watch.output().stderr).toBe('exited 0');
      expect(watch.output().stderr).toContain('sandbox wq was detached; watch ends');

      await vm.stopQemu();
      const again = vcnet(['detach', '--sandbox', 'wq', ...state]);
      expect(again.status, again.stderr).toBe(0);
      expect(fingerprint(other.pod)).toEqual(otherBefore);
    }, 180_000);
  },
);
