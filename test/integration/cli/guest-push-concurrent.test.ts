/**
 * Two commands on one sandbox whose guest pushes overlap, now that add-iface waits for the guest
 * without the sandbox lock: two add-ifaces of different interfaces at once (add-iface B plugs and
 * pushes while A still waits for the guest), one of them refused by the guest, and update-routes
 * while an add-iface waits. Every whole-set push leaves out the endpoints another running add-iface
 * waits for, and a route set changed meanwhile is sent again under the lock: the guest must end with
 * the set the record says, not the one the last push happened to send.
 * The VM is a paused QEMU (QMP answers, the NICs are plugged) and vcnet's agent serving a namespace
 * that plays the guest: the agent waits for a link with each NIC's MAC, which the test makes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { shortWaits, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { recordedLinks } from '../../helpers/held-vm.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, linkMac, makeConfiguredGuest, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the guest-push-concurrent test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-guest-concur-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();

interface SandboxRecord {
  guestPending?: Array<{ name: string }>;
  guestRoutes?: Array<{ dest: string; device: string }>;
}

function record(directory: string, sandbox: string): SandboxRecord {
  return JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8'));
}

/** The names the record's guestPending entries hold (an empty list when it has none). */
function pendingNames(directory: string, sandbox: string): string[] {
  return (record(directory, sandbox).guestPending ?? []).map((entry) => entry.name).sort();
}

/**
 * Pod link eth`n` (10.20`n`.0.2/24, up) with a route of its own, 10.10`n`.0.0/16 via 10.20`n`.0.1: a
 * route the guest gets on that NIC only, so a route set that left the NIC out shows.
 */
function addPodLink(pod: TestNamespace, node: TestNamespace, n: number): void {
  node.exec('ip', ['link', 'add', `veth${n}`, 'type', 'veth', 'peer', 'name', `eth${n}`, 'netns', pod.name]);
  node.exec('ip', ['link', 'set', `veth${n}`, 'up']);
  pod.exec('ip', ['addr', 'add', `10.20${n}.0.2/24`, 'dev', `eth${n}`]);
  pod.exec('ip', ['link', 'set', `eth${n}`, 'up']);
  pod.exec('ip', ['route', 'add', `10.10${n}.0.0/16`, 'via', `10.20${n}.0.1`, 'dev', `eth${n}`]);
}

/** The guest's NIC for pod link eth`n`: a veth with that link's MAC (the agent names and configures it). */
function showNic(guest: TestNamespace, pod: TestNamespace, n: number): void {
  guest.exec('ip', [
    'link',
    'add',
    `nic${n}`,
    'address',
    linkMac(pod, `eth${n}`),
    'type',
    'veth',
    'peer',
    'name',
    `nic${n}p`,
  ]);
  guest.exec('ip', ['link', 'set', `nic${n}p`, 'up']);
}

/** The guest's routes as "DEST dev DEV" (main table, the kernel's own link routes left out). */
function guestRoutes(guest: TestNamespace): string[] {
  return guest
    .ipJson<Array<{ dst: string; dev: string; protocol?: string }>>('-4', 'route', 'show')
    .filter((route) => route.protocol !== 'kernel')
    .map((route) => `${route.dst} dev ${route.dev}`)
    .sort();
}

function guestAddresses(guest: TestNamespace, name: string): string[] {
  const [link] = guest.ipJson<Array<{ addr_info: Array<{ local: string }> }>>('addr', 'show', 'dev', name);
  return link?.addr_info.map((address) => address.local) ?? [];
}

async function setUp(sandbox: string, linkAppearTimeoutMs: number) {
  const { pod, node } = makePod();
  const before = fingerprint(pod);
  const guest = makeConfiguredGuest();
  const state = ['--state-dir', stateDirectory()];
  const { agentPath } = await vm.attachAndStart(sandbox, pod.path, stateDirectory());
  const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs, sysfsRoot: stateDirectory() });
  cleanup.defer(() => agent.stop());
  const request = (n: number): string => {
    const path = join(stateDirectory(), `add${n}.json`);
    writeFileSync(path, JSON.stringify({ device: `eth${n}`, name: `net${n}` }));
    return path;
  };
  const addIface = (n: number, env: Record<string, string> = {}) => {
    const adding = vcnetAsync(['add-iface', sandbox, request(n), ...state], { VCNET_LOCK_TIMEOUT: '120', ...env });
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    return adding;
  };
  const finish = (links: number[]) => {
    const detached = vcnet(['detach', '--sandbox', sandbox, ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    for (const n of links) pod.exec('ip', ['link', 'del', `eth${n}`]);
    expect(fingerprint(pod)).toEqual(before);
  };
  return { pod, node, guest, agent, state, addIface, finish };
}

describe.skipIf(skipReason !== undefined)('overlapping guest pushes on one sandbox', () => {
  it('two add-ifaces at once: both succeed, the record holds both and no guestPending, the guest has both NICs and the routes of both', async () => {
    const { pod, node, guest, addIface, finish } = await setUp('cc', 120_000);
    addPodLink(pod, node, 8);
    addPodLink(pod, node, 9);
    const adding8 = addIface(8);
    const adding9 = addIface(9);
    // Both plugged and waiting for the guest without the lock.
    await until(
      () => pendingNames(stateDirectory(), 'cc').join() === 'net8,net9',
      'net8 and net9 recorded as waiting for the guest',
      150_000,
    );
    showNic(guest, pod, 9);
    showNic(guest, pod, 8);
    const [added8, added9] = await Promise.all([adding8.done, adding9.done]);
    expect(added8.status, added8.stderr).toBe(0);
    expect(added9.status, added9.stderr).toBe(0);
    console.log(`add-iface net8: ${added8.stderr}\nadd-iface net9: ${added9.stderr}`);
    expect(recordedLinks(stateDirectory(), 'cc').sort()).toEqual(['eth0', 'eth8', 'eth9']);
    expect(pendingNames(stateDirectory(), 'cc')).toEqual([]);
    expect(guestAddresses(guest, 'net8')).toContain('10.208.0.2');
    expect(guestAddresses(guest, 'net9')).toContain('10.209.0.2');
    expect(guestRoutes(guest)).toEqual(
      expect.arrayContaining([
        'default dev eth0',
        '10.100.0.0/16 dev eth0',
        '10.108.0.0/16 dev net8',
        '10.109.0.0/16 dev net9',
      ]),
    );
    await vm.stopQemu();
    finish([8, 9]);
  }, 300_000);

  it('two add-ifaces at once, the guest refusing one: only that one fails and is undone, the other stays configured with its routes', async () => {
    // The agent gives a NIC 15 s to show: net8's never does. net9's shows once both wait, a few
    // seconds after its push on a loaded machine.
    const { pod, node, guest, addIface, finish } = await setUp('cf', 15_000);
    addPodLink(pod, node, 8);
    addPodLink(pod, node, 9);
    // net8's undo unplugs from the paused VM, which never releases the NIC: the 20 s wait for it is
    // only sat out here (del-iface-vm-keeps-nic.test.ts keeps it whole).
    const adding8 = addIface(8, shortWaits({ unplugMs: 1_000 }));
    const adding9 = addIface(9);
    await until(
      () => pendingNames(stateDirectory(), 'cf').join() === 'net8,net9',
      'net8 and net9 recorded as waiting for the guest',
      150_000,
    );
    showNic(guest, pod, 9);
    const [added8, added9] = await Promise.all([adding8.done, adding9.done]);
    console.log(`add-iface net8: ${added8.stderr}\nadd-iface net9: ${added9.stderr}`);
    expect(added9.status, added9.stderr).toBe(0);
    expect(added8.status, added8.stderr).toBe(1);
    expect(added8.stderr).toContain('add-iface net8 failed');
    expect(added8.stderr).toContain('no link with the MAC address');
    // The undo is net8's alone. A paused QEMU has no guest to release the NIC, so its unplug cannot
    // finish: the record keeps net8 for del-iface (a running guest releases it and the undo is whole).
    expect(added8.stderr).toMatch(/left the VM's NIC net\d \(net8\)/);
    expect(added8.stderr).not.toContain('eth9');
    expect(recordedLinks(stateDirectory(), 'cf')).toContain('eth9');
    expect(pendingNames(stateDirectory(), 'cf')).toEqual([]);
    expect(guestAddresses(guest, 'net9')).toContain('10.209.0.2');
    const routes = guestRoutes(guest);
    console.log(`guest routes: ${JSON.stringify(routes)}`);
    expect(routes).toEqual(
      expect.arrayContaining(['default dev eth0', '10.100.0.0/16 dev eth0', '10.109.0.0/16 dev net9']),
    );
    expect(routes.filter((route) => route.includes('net8') || route.startsWith('10.108.'))).toEqual([]);
    await vm.stopQemu();
    finish([8, 9]);
  }, 300_000);

  it('update-routes while add-iface waits for the guest: the guest and the record end with the set update-routes gave', async () => {
    const { pod, node, guest, state, addIface, finish } = await setUp('cu', 120_000);
    addPodLink(pod, node, 9);
    const adding9 = addIface(9);
    await until(
      () => pendingNames(stateDirectory(), 'cu').join() === 'net9',
      'net9 recorded as waiting for the guest',
      150_000,
    );
    // A full set naming eth0 only (net9 is not in the guest yet): the agent takes it at once.
    const routesPath = join(stateDirectory(), 'routes.json');
    writeFileSync(
      routesPath,
      JSON.stringify([
        { dest: '', gateway: '10.200.0.1', device: 'eth0' },
        { dest: '10.150.0.0/16', gateway: '10.200.0.1', device: 'eth0' },
      ]),
    );
    const updated = await vcnetAsync(['update-routes', 'cu', routesPath, ...state], { VCNET_LOCK_TIMEOUT: '30' }).done;
    expect(updated.status, updated.stderr).toBe(0);
    expect(adding9.child.exitCode, 'add-iface still waiting for the guest').toBeNull();
    showNic(guest, pod, 9);
    const added9 = await adding9.done;
    expect(added9.status, added9.stderr).toBe(0);
    console.log(`add-iface net9: ${added9.stderr}`);
    expect(guestAddresses(guest, 'net9')).toContain('10.209.0.2');
    const recorded = (record(stateDirectory(), 'cu').guestRoutes ?? [])
      .map((route) => `${route.dest} ${route.device}`)
      .sort();
    console.log(`recorded guestRoutes: ${JSON.stringify(recorded)}; guest: ${JSON.stringify(guestRoutes(guest))}`);
    expect(recorded).toEqual([' eth0', '10.150.0.0/16 eth0']);
    expect(guestRoutes(guest)).toEqual(['10.150.0.0/16 dev eth0', 'default dev eth0']);
    await vm.stopQemu();
    finish([9]);
  }, 300_000);

  it("update-routes while the watch's push waits for the guest: the guest and the record end with the set update-routes gave", async () => {
    const { pod, node, guest, state, finish } = await setUp('cw', 120_000);
    const watch = vcnetAsync(['watch', '--sandbox', 'cw', '--debounce', '50', ...state]);
    cleanup.defer(async () => {
      watch.child.kill('SIGKILL');
      await watch.done;
    });
    await until(() => watch.output().stderr.includes('watching sandbox cw'), 'the watch to start', 30_000);
    addPodLink(pod, node, 9);
    await until(
      () => pendingNames(stateDirectory(), 'cw').join() === 'eth9',
      'eth9 recorded as waiting for the guest (the watch)',
      150_000,
    );
    // A full set naming eth0 only (eth9 is not in the guest yet): the agent takes it at once.
    const routesPath = join(stateDirectory(), 'routes.json');
    writeFileSync(
      routesPath,
      JSON.stringify([
        { dest: '', gateway: '10.200.0.1', device: 'eth0' },
        { dest: '10.150.0.0/16', gateway: '10.200.0.1', device: 'eth0' },
      ]),
    );
    const updated = await vcnetAsync(['update-routes', 'cw', routesPath, ...state], { VCNET_LOCK_TIMEOUT: '30' }).done;
    expect(updated.status, updated.stderr).toBe(0);
    expect(pendingNames(stateDirectory(), 'cw'), 'the watch still waiting for the guest').toEqual(['eth9']);
    showNic(guest, pod, 9);
    // The agent renames the guest's NIC to eth9 once it configures it: no eth9 before then.
    const hasEth9 = () =>
      guest.ipJson<unknown[]>('link', 'show').some((link) => (link as { ifname: string }).ifname === 'eth9');
    await until(
      () => hasEth9() && guestAddresses(guest, 'eth9').includes('10.209.0.2'),
      'eth9 configured in the guest',
      60_000,
    );
    // The watch prints a change's summary once it is done, under the lock again too.
    await until(
      () =>
        watch
          .output()
          .stdout.split('\n')
          .some((line) => line.includes('"added":["eth9"]')),
      "the watch's change done",
      60_000,
    );
    expect(pendingNames(stateDirectory(), 'cw')).toEqual([]);
    const recorded = (record(stateDirectory(), 'cw').guestRoutes ?? [])
      .map((route) => `${route.dest} ${route.device}`)
      .sort();
    console.log(`recorded guestRoutes: ${JSON.stringify(recorded)}; guest: ${JSON.stringify(guestRoutes(guest))}`);
    expect(recorded).toEqual([' eth0', '10.150.0.0/16 eth0']);
    // The watch finished its push under the lock again: the set the guest holds is the recorded one,
    // not the one the watch's push (read before update-routes) sent.
    expect(guestRoutes(guest)).toEqual(['10.150.0.0/16 dev eth0', 'default dev eth0']);
    await vm.stopQemu();
    watch.child.kill('SIGTERM');
    await watch.done;
    finish([9]);
  }, 300_000);

  it('configure-guest while one add-iface waits for the guest and is killed during the push: only the entries of the endpoints it sent are cleared', async () => {
    const { pod, node, guest, agent, state, addIface, finish } = await setUp('cg', 120_000);
    addPodLink(pod, node, 8);
    addPodLink(pod, node, 9);
    // net8: its add-iface killed while it waited (guest-pending(stopped)): configure-guest sends it.
    const adding8 = addIface(8);
    await until(() => pendingNames(stateDirectory(), 'cg').join() === 'net8', 'net8 recorded as waiting', 150_000);
    adding8.child.kill('SIGKILL');
    await adding8.done;
    // net9: its add-iface still waits for the guest: configure-guest leaves it out.
    const adding9 = addIface(9);
    await until(() => pendingNames(stateDirectory(), 'cg').join() === 'net8,net9', 'net9 recorded as waiting', 150_000);
    // configure-guest sends every interface: the guest's eth0 gets the MAC its NIC has from the pod's eth0, as in a VM.
    guest.exec('ip', ['link', 'set', 'eth0', 'address', linkMac(pod, 'eth0')]);
    const before = agent.accepted();
    const configuring = vcnetAsync(['configure-guest', '--sandbox', 'cg', ...state]);
    cleanup.defer(async () => {
      configuring.child.kill('SIGKILL');
      await configuring.done;
    });
    // configure-guest reached the agent (it chose what to send before): it waits for net8's NIC now.
    await until(() => agent.accepted() > before, 'configure-guest connected to the agent', 60_000);
    expect(configuring.child.exitCode).toBeNull();
    // net9's add-iface is killed meanwhile, before the guest showed net9: net9 was sent by nobody.
    adding9.child.kill('SIGKILL');
    await adding9.done;
    showNic(guest, pod, 8);
    const configured = await configuring.done;
    expect(configured.status, configured.stderr).toBe(0);
    expect(guestAddresses(guest, 'net8')).toContain('10.208.0.2');
    // net9 is still plugged and not configured: its entry must stay, for list and a later configure-guest.
    expect(pendingNames(stateDirectory(), 'cg')).toEqual(['net9']);
    expect(vcnet(['list', ...state]).stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(stopped)');
    await vm.stopQemu();
    finish([8, 9]);
  }, 300_000);
});
