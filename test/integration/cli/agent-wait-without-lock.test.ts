/**
 * Commands on a sandbox whose QEMU runs but whose guest agent cannot be reached yet (its socket not
 * there or refusing: a runtime that links the agent socket once the guest is up, a guest still
 * booting). vcnet tries the agent for 10 s; it used to try holding the sandbox lock, so every other
 * command on the sandbox (list-ifaces here) timed out on the lock although nothing was wrong. It now
 * gives the lock back after 1 s, waits for the agent without it, and runs the command again under
 * the lock, from a fresh read of the record, once the agent answers.
 * The VM is a paused QEMU (QMP answers, the NIC is plugged) and vcnet's agent serving a namespace
 * that plays the guest, where the new NIC is a link with the pod link's MAC.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import {
  addEth9,
  addGuestNic9,
  expectNet1InQemu,
  holdQmp,
  recordedLinks,
  sandboxesBehindRelay,
  vcnetKilledAfterTest,
} from '../../helpers/held-vm.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, makeConfiguredGuest } from '../../helpers/pod.js';
import { untilInfoNetwork } from '../../helpers/qmp-look.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the agent-wait-without-lock test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-agent-wait-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();
const sandboxBehindRelay = sandboxesBehindRelay(vm, cleanup, stateDirectory);

/**
 * list-ifaces of `sandbox` while a command on it waits for the agent: waiting at most 5 s for the
 * sandbox's lock, and 200 ms for the agent (none listens: it answers the recorded view).
 */
function listIfacesMeanwhile(sandbox: string) {
  return vcnetAsync(['list-ifaces', sandbox, '--json', '--timeout', '200', '--state-dir', stateDirectory()], {
    VCNET_LOCK_TIMEOUT: '5',
  }).done;
}

/** `routes.json` in the test's state directory: 10.150.0.0/16 via 10.200.0.1 on eth0. */
function writeRoutes(): string {
  return writeRequest(stateDirectory(), 'routes.json', [
    { dest: '10.150.0.0/16', gateway: '10.200.0.1', device: 'eth0' },
  ]);
}

describe.skipIf(skipReason !== undefined)('add-iface while the guest agent cannot be reached yet', () => {
  it('waits for the agent without the sandbox lock: list-ifaces goes through meanwhile; the NIC is plugged and configured once the agent answers', async () => {
    // Nothing listens on the recorded agent socket yet: the agent is tried until it does.
    const { pod, node, before, state, qemuQmpPath, agentPath, relay } = await sandboxBehindRelay('ag');
    const guest = makeConfiguredGuest();
    addEth9({ pod, node });
    addGuestNic9(guest, pod);
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });

    const acceptedBefore = relay.accepted();
    const adding = vcnetKilledAfterTest(cleanup, ['add-iface', 'ag', request, ...state]);
    // add-iface's QMP connection: QEMU answered, the agent is tried next (for 10 s).
    await until(() => relay.accepted() > acceptedBefore, "add-iface's QMP connection", 30_000);

    // Meanwhile the sandbox is not locked: list-ifaces answers (the recorded view, as no agent listens).
    const listed = await listIfacesMeanwhile('ag');
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('"eth0"');
    expect(adding.child.exitCode, 'add-iface still waiting for the agent').toBeNull();
    expect(recordedLinks(stateDirectory(), 'ag')).toEqual(['eth0']);

    // The agent comes up: add-iface runs again under the lock, plugs the NIC and configures it.
    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
    cleanup.defer(() => agent.stop());
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(recordedLinks(stateDirectory(), 'ag')).toEqual(['eth0', 'eth9']);
    await expectNet1InQemu(qemuQmpPath);
    const [configured] = guest.ipJson<Array<{ ifname: string; addr_info: Array<{ local: string }> }>>(
      'addr',
      'show',
      'dev',
      'net9',
    );
    expect(configured?.addr_info.map((address) => address.local)).toContain('10.209.0.2');

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'ag', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});

/** The addresses of the guest's link with `mac`, once it has one (an empty list until then). */
function guestAddresses(guest: ReturnType<typeof makeConfiguredGuest>, mac: string): string[] {
  const links = guest.ipJson<Array<{ address: string; addr_info: Array<{ local: string }> }>>('addr', 'show');
  return links.find((link) => link.address === mac)?.addr_info.map((address) => address.local) ?? [];
}

describe.skipIf(skipReason !== undefined)('watch while the guest agent cannot be reached yet', () => {
  it('waits for the agent without the sandbox lock: list-ifaces goes through meanwhile; the new link is attached and configured once the agent answers', async () => {
    const { pod, node, before, state, agentPath, relay } = await sandboxBehindRelay('aw');
    const guest = makeConfiguredGuest();
    const watch = vcnetKilledAfterTest(cleanup, ['watch', '--sandbox', 'aw', '--debounce', '50', ...state]);
    await until(() => watch.output().stderr.includes('watching sandbox aw'), 'the watch to start', 15_000);

    const acceptedBefore = relay.accepted();
    addEth9({ pod, node });
    const mac = addGuestNic9(guest, pod);
    // The watch read the new link and QEMU answered it: the agent is tried next.
    await until(() => relay.accepted() > acceptedBefore, "the watch's QMP connection", 30_000);

    const listed = await listIfacesMeanwhile('aw');
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(recordedLinks(stateDirectory(), 'aw')).toEqual(['eth0']);

    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
    cleanup.defer(() => agent.stop());
    await until(() => guestAddresses(guest, mac).includes('10.209.0.2'), 'eth9 configured in the guest', 60_000);
    expect(recordedLinks(stateDirectory(), 'aw')).toEqual(['eth0', 'eth9']);

    await vm.stopQemu();
    watch.child.kill('SIGTERM');
    await watch.done;
    const detached = vcnet(['detach', '--sandbox', 'aw', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});

describe.skipIf(skipReason !== undefined)('update-routes while the guest agent cannot be reached yet', () => {
  it('waits for the agent without the sandbox lock: list-ifaces goes through meanwhile; the routes reach the guest and the record once the agent answers', async () => {
    const { state, agentPath, relay } = await sandboxBehindRelay('ar');
    const guest = makeConfiguredGuest();
    const file = writeRoutes();
    const acceptedBefore = relay.accepted();
    const updating = vcnetKilledAfterTest(cleanup, ['update-routes', 'ar', file, ...state]);
    await until(() => relay.accepted() > acceptedBefore, "update-routes' QMP connection", 30_000);

    const listed = await listIfacesMeanwhile('ar');
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(updating.child.exitCode, 'update-routes still waiting for the agent').toBeNull();

    const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
    cleanup.defer(() => agent.stop());
    const updated = await updating.done;
    expect(updated.status, updated.stderr).toBe(0);
    expect(guest.exec('ip', ['route', 'show', '10.150.0.0/16'])).toContain('via 10.200.0.1 dev eth0');
    const record = JSON.parse(readFileSync(join(stateDirectory(), 'ar', 'state.json'), 'utf8'));
    expect(record.guestRoutes).toEqual([expect.objectContaining({ dest: '10.150.0.0/16', device: 'eth0' })]);

    await vm.stopQemu();
    expect(vcnet(['detach', '--sandbox', 'ar', ...state]).status).toBe(0);
  }, 120_000);
});

describe.skipIf(skipReason !== undefined)('add-iface while the guest agent stays unreachable past its wait', () => {
  it('fails with the whole wait and how little of it was under the lock; nothing is changed', async () => {
    const { pod, node, state, qemuQmpPath, agentPath, relay } = await sandboxBehindRelay('au');
    addEth9({ pod, node });
    const beforeAdd = fingerprint(pod);
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
    const acceptedBefore = relay.accepted();
    const adding = vcnetKilledAfterTest(cleanup, ['add-iface', 'au', request, ...state]);
    await until(() => relay.accepted() > acceptedBefore, "add-iface's QMP connection", 30_000);
    const listed = await listIfacesMeanwhile('au');
    expect(listed.status, listed.stderr).toBe(0);

    const failed = await adding.done;
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain(`could not connect to the agent socket ${agentPath} after`);
    // The whole wait (10 s, less the last pause between tries), not only the part under the lock.
    const waited = Number(/after \d+ attempts in (\d+) ms: connect ENOENT/.exec(failed.stderr)?.[1]);
    expect(waited).toBeGreaterThan(1000);
    // The product's whole wait (AGENT_CONNECT_TIMEOUT_MS), which a test that only sits it out would
    // shorten (shortWaits): tries stop only at its end, so less than a last pause short of 10 s.
    expect(waited).toBeGreaterThanOrEqual(9_000);
    expect(failed.stderr).toContain(
      "(sandbox au's agent; only the first 1000 ms of it under the sandbox's lock, the rest without it)",
    );
    expect(recordedLinks(stateDirectory(), 'au')).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(beforeAdd);
    const network = await untilInfoNetwork(qemuQmpPath, () => true, "QEMU's networks", {
      timeoutMs: 30_000,
      handshakeTimeoutMs: 15_000,
    });
    expect(network).not.toContain('net1');
  }, 120_000);
});

describe.skipIf(skipReason !== undefined)(
  'update-routes whose agent wait outlasted the wait for QMP, another client taking QMP meanwhile',
  () => {
    it('fails after one short try for QMP under the lock, and says so: QMP had answered, its wait was used up meanwhile', async () => {
      const { state, qemuQmpPath, agentPath, relay } = await sandboxBehindRelay('aq');
      const guest = makeConfiguredGuest();
      const file = writeRoutes();
      const acceptedBefore = relay.accepted();
      // QMP's wait is 2 s: the agent's (10 s) outlasts it.
      const updating = vcnetKilledAfterTest(cleanup, ['update-routes', 'aq', file, ...state], {
        VCNET_QMP_CONNECT_TIMEOUT: '2',
      });
      await until(() => relay.accepted() > acceptedBefore, "update-routes' QMP connection", 30_000);
      // QEMU greets the holder once update-routes let QMP go: it waits for the agent without the lock.
      const holder = await holdQmp(cleanup, qemuQmpPath);
      // Past QMP's 2 s (a setup delay, not an assertion), the agent answers.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 2_000 });
      cleanup.defer(() => agent.stop());
      const updated = await updating.done;
      await holder.release();
      console.log(updated.stderr);
      expect(updated.status, updated.stderr).toBe(1);
      expect(updated.stderr).toContain('QMP answered before, within its 2000 ms wait');
      expect(updated.stderr).toContain('tried for 1000 ms more under the lock');
      expect(updated.stderr).not.toContain('to wait longer');
      expect(guest.exec('ip', ['route', 'show', '10.150.0.0/16'])).toBe('');
      await vm.stopQemu();
      expect(vcnet(['detach', '--sandbox', 'aq', ...state]).status).toBe(0);
    }, 120_000);
  },
);

describe.skipIf(skipReason !== undefined)(
  'update-routes whose agent answered its wait without the lock, then not under it',
  () => {
    it("says how much of the agent's wait was under the lock: every try there, not only the first", async () => {
      const { state, agentPath, relay } = await sandboxBehindRelay('a2');
      const file = writeRoutes();
      const acceptedBefore = relay.accepted();
      const updating = vcnetKilledAfterTest(cleanup, ['update-routes', 'a2', file, ...state]);
      await until(() => relay.accepted() > acceptedBefore, "update-routes' QMP connection", 30_000);
      // The lock is free once update-routes waits for the agent without it.
      const listed = await listIfacesMeanwhile('a2');
      expect(listed.status, listed.stderr).toBe(0);
      // An agent socket that takes one connection and goes: the wait without the lock ends, the try
      // under the lock again finds no socket, and so does every wait after it.
      const oneShot = createServer((socket) => {
        socket.destroy();
        oneShot.close();
      });
      cleanup.defer(
        () => new Promise<void>((resolve) => (oneShot.listening ? oneShot.close(() => resolve()) : resolve())),
      );
      await new Promise<void>((resolve) => oneShot.listen(agentPath, resolve));
      const updated = await updating.done;
      console.log(updated.stderr);
      expect(updated.status, updated.stderr).toBe(1);
      expect(updated.stderr).toContain("2 tries under the sandbox's lock");
      expect(updated.stderr).not.toContain("only the first 1000 ms of it under the sandbox's lock");
      await vm.stopQemu();
      expect(vcnet(['detach', '--sandbox', 'a2', ...state]).status).toBe(0);
    }, 120_000);
  },
);
