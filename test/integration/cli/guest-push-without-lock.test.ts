/**
 * add-iface on a sandbox whose guest is slow to show the new NIC (a TCG guest takes seconds; a
 * booting one longer). The NIC is plugged and recorded under the sandbox lock; the wait for the
 * guest to show it and for the agent to configure it used to run under the lock too, so every other
 * command on the sandbox (list-ifaces here) timed out on the lock although nothing was wrong. The
 * endpoint is now recorded as waiting for the guest (`guestPending`), the lock is given back for the
 * push, and taken again to finish it.
 * The VM is a paused QEMU (QMP answers, the NIC is plugged) and vcnet's agent serving a namespace
 * that plays the guest: the agent waits for a link with the NIC's MAC, which the test makes once it
 * has seen the lock free (or not).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VcnetError } from '../../../src/errors.js';
import { addInterface } from '../../../src/sandbox/sandbox-interfaces.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { addEth9, recordedLinks } from '../../helpers/held-vm.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, linkMac, makeConfiguredGuest, makePod } from '../../helpers/pod.js';
import { untilInfoNetwork } from '../../helpers/qmp-look.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the guest-push-without-lock test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-guest-push-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();

interface RecordedPending {
  name: string;
}

/** The record's `guestPending` entries (an empty list when it has none). */
function recordedPending(directory: string, sandbox: string): RecordedPending[] {
  const record = JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8'));
  return record.guestPending ?? [];
}

/** The addresses of the guest's link `name` (an empty list while it has none). */
function guestAddresses(guest: ReturnType<typeof makeConfiguredGuest>, name: string): string[] {
  const [link] = guest.ipJson<Array<{ addr_info: Array<{ local: string }> }>>('addr', 'show', 'dev', name);
  return link?.addr_info.map((address) => address.local) ?? [];
}

/**
 * A pod attached as sandbox `id` to a paused QEMU, and vcnet's agent serving a namespace that plays
 * its guest: the agent answers at once and then waits (up to 2 minutes) for a hot-plugged NIC to
 * show in the guest, by its MAC (no sysfs of the guest to look its PCI path up in).
 */
async function sandboxWithSlowGuest(id: string, linkAppearTimeoutMs = 120_000) {
  const { pod, node } = makePod();
  const before = fingerprint(pod);
  const guest = makeConfiguredGuest();
  const { agentPath } = await vm.attachAndStart(id, pod.path, stateDirectory());
  const agent = await serveNamespaceAgent(guest.path, agentPath, {
    linkAppearTimeoutMs,
    sysfsRoot: stateDirectory(),
  });
  cleanup.defer(() => agent.stop());
  return { pod, node, before, guest, state: ['--state-dir', stateDirectory()] };
}

/** eth9 added to the pod, and the path of the add-iface request that adds it as net9. */
function addNet9(pod: Parameters<typeof addEth9>[0]): string {
  addEth9(pod);
  const request = join(stateDirectory(), 'add.json');
  writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));
  return request;
}

describe.skipIf(skipReason !== undefined)('add-iface while the guest is slow to show the new NIC', () => {
  it('waits for the guest without the sandbox lock: list-ifaces goes through meanwhile; the NIC is configured and the record finished once the guest shows it', async () => {
    const { pod, node, before, guest, state } = await sandboxWithSlowGuest('gp');
    const qemuQmpPath = join(stateDirectory(), 'qmp.sock');
    const request = addNet9({ pod, node });
    const mac = linkMac(pod, 'eth9');

    const adding = vcnetAsync(['add-iface', 'gp', request, ...state]);
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    // The NIC is plugged (add-iface lets go of QMP only then): what is left is the guest's part.
    await untilInfoNetwork(qemuQmpPath, (text) => text.includes('netdev-net1'), 'net1 in QEMU', {
      timeoutMs: 60_000,
      handshakeTimeoutMs: 30_000,
    });

    const listed = await vcnetAsync(['list-ifaces', 'gp', '--json', '--timeout', '200', ...state], {
      VCNET_LOCK_TIMEOUT: '5',
    }).done;
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(adding.child.exitCode, 'add-iface still waiting for the guest').toBeNull();
    expect(recordedPending(stateDirectory(), 'gp').map((entry) => entry.name)).toEqual(['net9']);
    // `vcnet list` says so.
    const list = vcnet(['list', '--json', ...state]);
    expect(list.status, list.stderr).toBe(0);
    const listing = (
      JSON.parse(list.stdout) as Array<{ id: string; guestPending?: string[]; endpoints: unknown[] }>
    ).find((entry) => entry.id === 'gp');
    expect(listing?.guestPending).toEqual(['net9']);
    expect(listing?.endpoints).toContainEqual(expect.objectContaining({ guestName: 'net9', guestPending: 'waiting' }));

    // The NIC shows in the guest: the agent configures it, add-iface finishes under the lock.
    guest.exec('ip', ['link', 'add', 'net9', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic9p']);
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(guestAddresses(guest, 'net9')).toContain('10.209.0.2');
    expect(recordedLinks(stateDirectory(), 'gp')).toEqual(['eth0', 'eth9']);
    expect(recordedPending(stateDirectory(), 'gp')).toEqual([]);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'gp', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);

  it('an add-iface killed while it waited for the guest leaves a record the other commands finish: list shows it, add-iface again says what to do, configure-guest finishes it', async () => {
    const { pod, node, before, guest, state } = await sandboxWithSlowGuest('gk');
    const request = addNet9({ pod, node });
    const adding = vcnetAsync(['add-iface', 'gk', request, ...state]);
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'gk').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    adding.child.kill('SIGKILL');
    await adding.done;

    const list = vcnet(['list', ...state]);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(stopped)');
    expect(list.stdout).toContain('the add-iface that plugged net9 was stopped while it waited for the guest');

    const again = vcnet(['add-iface', 'gk', request, ...state]);
    expect(again.status, again.stderr).toBe(1);
    expect(again.stderr).toContain('interface net9 (from eth9) is already added to sandbox gk');
    expect(again.stderr).toContain('was stopped while it waited for the guest');
    expect(again.stderr).toContain('vcnet configure-guest --sandbox gk');
    expect(again.stderr).toContain('vcnet del-iface gk');

    // configure-guest tells the guest (which shows the NIC now) and clears the entry. It sends every
    // interface: the guest's eth0 gets the MAC its NIC has from the pod's eth0, as in a VM.
    guest.exec('ip', ['link', 'set', 'eth0', 'address', linkMac(pod, 'eth0')]);
    guest.exec('ip', ['link', 'add', 'net9', 'address', linkMac(pod, 'eth9'), 'type', 'veth', 'peer', 'name', 'nic9p']);
    // Run beside this process: the agent serving the guest answers from its event loop.
    const configured = await vcnetAsync(['configure-guest', '--sandbox', 'gk', ...state]).done;
    expect(configured.status, configured.stderr).toBe(0);
    expect(guestAddresses(guest, 'net9')).toContain('10.209.0.2');
    expect(recordedPending(stateDirectory(), 'gk')).toEqual([]);
    expect(vcnet(['list', ...state]).stdout).not.toContain('guest-pending');

    // The VM is gone too: del-iface removes the host side alone.
    await vm.stopQemu();
    const removed = vcnet(['del-iface', 'gk', request, ...state]);
    expect(removed.status, removed.stderr).toBe(0);
    expect(recordedLinks(stateDirectory(), 'gk')).toEqual(['eth0']);

    const detached = vcnet(['detach', '--sandbox', 'gk', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
  it('a del-iface while add-iface waits for the guest wins: add-iface leaves the interface removed and says so', async () => {
    const { pod, node, before, guest, state } = await sandboxWithSlowGuest('gd');
    const request = addNet9({ pod, node });
    const mac = linkMac(pod, 'eth9');
    const adding = vcnetAsync(['add-iface', 'gd', request, ...state]);
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'gd').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    // The VM stops (its NIC goes with it) and del-iface removes the interface's host side.
    await vm.stopQemu();
    const removed = await vcnetAsync(['del-iface', 'gd', request, ...state], { VCNET_LOCK_TIMEOUT: '5' }).done;
    expect(removed.status, removed.stderr).toBe(0);
    expect(recordedLinks(stateDirectory(), 'gd')).toEqual(['eth0']);
    expect(recordedPending(stateDirectory(), 'gd')).toEqual([]);

    // The guest answers add-iface's push now: add-iface finds the interface gone and leaves it so.
    guest.exec('ip', ['link', 'add', 'net9', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic9p']);
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(added.stderr).toContain(
      'sandbox gd: net9 was removed from the record (del-iface, or vcnet watch as its pod link went) while add-iface waited for the guest: add-iface leaves it as that command left it',
    );
    expect(recordedLinks(stateDirectory(), 'gd')).toEqual(['eth0']);
    expect(recordedPending(stateDirectory(), 'gd')).toEqual([]);

    const detached = vcnet(['detach', '--sandbox', 'gd', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
  it('an add-iface whose guest failed and whose lock another command holds past the lock timeout says the interface is left plugged and unfinished, not only that the sandbox is locked', async () => {
    // The agent gives the NIC 10 s to show; it never does. The lock is held long before that ends.
    const { pod, node, before, state } = await sandboxWithSlowGuest('gl', 10_000);
    const request = addNet9({ pod, node });
    const adding = vcnetAsync(['add-iface', 'gl', request, ...state], { VCNET_LOCK_TIMEOUT: '2' });
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'gl').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    // Another holder of the sandbox's lock (as a long update-routes or configure-guest would be).
    const letGo = await holdSandboxLock('gl');
    // The guest never shows the NIC: add-iface's push fails, and its undo needs the lock.
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(4);
    expect(added.stderr).toContain('add-iface net9 on sandbox gl is unfinished: the guest did not configure net9');
    expect(added.stderr).toContain('no link with the MAC address');
    expect(added.stderr).toContain('could not take the lock again to undo it: sandbox gl is being changed by process');
    expect(added.stderr).toContain('net9 stays plugged and recorded as waiting for the guest');
    expect(added.stderr).toContain('vcnet del-iface gl FILE');
    letGo();
    // What it says is so: the record keeps net9, its add-iface stopped.
    expect(recordedLinks(stateDirectory(), 'gl')).toEqual(['eth0', 'eth9']);
    expect(vcnet(['list', ...state]).stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(stopped)');

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'gl', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
  it("a library caller's addInterface whose finish cannot take the lock again leaves an entry read as waiting only until the deadline it records, though its process lives on", async () => {
    const { pod, node, before, state } = await sandboxWithSlowGuest('gy', 10_000);
    const request = addNet9({ pod, node });
    const adding = addInterface('gy', readFileSync(request, 'utf8'), {
      stateDirectory: stateDirectory(),
      lockTimeoutMs: 2_000,
    }).then(
      () => new Error('addInterface succeeded'),
      (error: unknown) => error,
    );
    await until(
      () => recordedPending(stateDirectory(), 'gy').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    const letGo = await holdSandboxLock('gy');
    const failed = (await adding) as VcnetError;
    expect(failed.code, failed.message).toBe('VCNET_SANDBOX_LOCKED');
    expect(failed.message).toContain('add-iface net9 on sandbox gy is unfinished: the guest did not configure net9');
    letGo();
    // This process runs on (a runtime's): within the entry's deadline it is taken as still waiting...
    expect(vcnet(['list', ...state]).stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(waiting)');
    // ...and past it (the entry as it reads then) as stopped, not for as long as the process runs.
    const file = join(stateDirectory(), 'gy', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    expect(record.guestPending[0].pid).toBe(process.pid);
    record.guestPending[0].waitsUntil = new Date(Date.now() - 1000).toISOString();
    writeFileSync(file, JSON.stringify(record));
    expect(vcnet(['list', ...state]).stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(stopped)');
    const again = vcnet(['add-iface', 'gy', request, ...state]);
    expect(again.status, again.stderr).toBe(1);
    expect(again.stderr).toContain('was stopped while it waited for the guest');

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'gy', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);

  it('a watch whose lock another command holds past the lock timeout when its push is done clears its entry on its next try: the endpoint is not left out of every later push', async () => {
    const { pod, node, before, guest, state } = await sandboxWithSlowGuest('gx');
    const watch = vcnetAsync(['watch', '--sandbox', 'gx', '--debounce', '50', ...state], { VCNET_LOCK_TIMEOUT: '2' });
    cleanup.defer(async () => {
      watch.child.kill('SIGKILL');
      await watch.done;
    });
    await until(() => watch.output().stderr.includes('watching sandbox gx'), 'the watch to start', 30_000);
    addEth9({ pod, node });
    const mac = linkMac(pod, 'eth9');
    await until(
      () => recordedPending(stateDirectory(), 'gx').some((entry) => entry.name === 'eth9'),
      'eth9 recorded as waiting for the guest',
      60_000,
    );
    // Another holder of the sandbox's lock while the guest shows the NIC and the watch's push ends.
    const letGo = await holdSandboxLock('gx');
    guest.exec('ip', ['link', 'add', 'eth9', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic9p']);
    await until(
      () => watch.output().stderr.includes('sandbox gx is being changed by process'),
      "the watch's finish refused the lock",
      120_000,
    );
    letGo();
    // The watch tries the change again (its timer) and says once it went through.
    await until(
      () => watch.output().stderr.includes('applied the namespace change to sandbox gx that could not be applied'),
      'the watch to apply the change on a later try',
      120_000,
    );
    expect(recordedPending(stateDirectory(), 'gx')).toEqual([]);
    expect(vcnet(['list', ...state]).stdout).not.toContain('guest-pending');
    expect(recordedLinks(stateDirectory(), 'gx')).toEqual(['eth0', 'eth9']);

    await vm.stopQemu();
    watch.child.kill('SIGTERM');
    await watch.done;
    const detached = vcnet(['detach', '--sandbox', 'gx', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 300_000);
  it("the watch's reaction to a new pod link waits for the guest without the sandbox lock: list-ifaces goes through meanwhile", async () => {
    const { pod, node, before, guest, state } = await sandboxWithSlowGuest('gw');
    const qemuQmpPath = join(stateDirectory(), 'qmp.sock');
    const watch = vcnetAsync(['watch', '--sandbox', 'gw', '--debounce', '50', ...state]);
    cleanup.defer(async () => {
      watch.child.kill('SIGKILL');
      await watch.done;
    });
    await until(() => watch.output().stderr.includes('watching sandbox gw'), 'the watch to start', 30_000);
    addEth9({ pod, node });
    const mac = linkMac(pod, 'eth9');
    // The watch plugged the NIC (it lets go of QMP only then): what is left is the guest's part.
    await untilInfoNetwork(qemuQmpPath, (text) => text.includes('netdev-net1'), 'net1 in QEMU', {
      timeoutMs: 60_000,
      handshakeTimeoutMs: 30_000,
    });

    const listed = await vcnetAsync(['list-ifaces', 'gw', '--json', '--timeout', '200', ...state], {
      VCNET_LOCK_TIMEOUT: '5',
    }).done;
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(recordedPending(stateDirectory(), 'gw').map((entry) => entry.name)).toEqual(['eth9']);

    guest.exec('ip', ['link', 'add', 'eth9', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic9p']);
    await until(() => guestAddresses(guest, 'eth9').includes('10.209.0.2'), 'eth9 configured in the guest', 60_000);
    await until(() => recordedPending(stateDirectory(), 'gw').length === 0, 'the entry cleared', 60_000);
    expect(recordedLinks(stateDirectory(), 'gw')).toEqual(['eth0', 'eth9']);

    await vm.stopQemu();
    watch.child.kill('SIGTERM');
    await watch.done;
    const detached = vcnet(['detach', '--sandbox', 'gw', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);
});

/**
 * Another holder of sandbox `id`'s lock (as a long update-routes or configure-guest would be), in
 * its own process group so the shell's sleep goes with it (-o: flock alone holds the lock). Returns
 * the call that lets it go; the cleanup lets it go too.
 */
async function holdSandboxLock(id: string): Promise<() => void> {
  const holder = spawn('flock', ['-o', join(stateDirectory(), '.locks', id), '-c', 'echo held; exec sleep 120'], {
    detached: true,
  });
  const letGo = () => {
    if (holder.exitCode === null && holder.signalCode === null && holder.pid) process.kill(-holder.pid, 'SIGKILL');
  };
  cleanup.defer(letGo);
  let held = '';
  holder.stdout.on('data', (data: Buffer) => {
    held += String(data);
  });
  await until(() => held.includes('held'), 'the lock held by another process', 30_000);
  return letGo;
}
