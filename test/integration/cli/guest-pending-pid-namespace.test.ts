/**
 * add-iface and the commands that read its guestPending entry in different PID namespaces (a
 * containerised runtime, or a host CLI against a runtime in a container: both share the state
 * directory and the pod's network namespace). The entry names add-iface's pid as add-iface saw it:
 * a reader in another pid namespace that looked that number up in its own /proc saw no such process
 * (or an unrelated one) and called a running add-iface stopped, so a whole-set push sent a NIC the
 * guest may not show yet, and configure-guest cleared the entry.
 * Writer and reader in two sibling PID namespaces (neither sees the other) take the guess path; the
 * guess counts to the deadline the add-iface recorded with its own lock wait.
 * The VM is a paused QEMU and vcnet's agent serving a namespace that plays the guest, which shows
 * the NIC only when the test makes it (as in guest-push-without-lock.test.ts).
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectOutput } from '../../helpers/child-output.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { CLI, type CliResult, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { addEth9, recordedLinks } from '../../helpers/held-vm.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, linkMac, makeConfiguredGuest, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { qemuIntegrationSkipReason, sandboxVmFixture } from '../hypervisor/paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the guest-pending pid namespace test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-guest-pidns-');
const vm = sandboxVmFixture();
const cleanup = cleanupAfterEach();

/**
 * vcnet run in a new PID namespace (with its own /proc), as in a container; unshare kills it when it
 * dies. Two such runs are in sibling namespaces: children of this one, neither seeing the other.
 */
function vcnetInPidNamespace(args: string[], env: Record<string, string> = {}) {
  const child = spawn('unshare', ['--pid', '--mount-proc', '--kill-child', process.execPath, CLI, ...args], {
    env: { ...process.env, ...env },
  });
  const { done, sofar } = collectOutput(child);
  return { child, done: done as Promise<CliResult>, output: sofar };
}

/** vcnet run beside this process (the agent serving the guest answers from this event loop). */
function vcnetHere(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args]);
  const { done, sofar } = collectOutput(child);
  return { child, done: done as Promise<CliResult>, output: sofar };
}

interface RecordedEntry {
  name: string;
  pid: number;
  since: string;
  waitsUntil?: string;
  pidNamespace?: { device: number; inode: number };
}

function recordedPending(directory: string, sandbox: string): RecordedEntry[] {
  const record = JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8'));
  return record.guestPending ?? [];
}

interface ListedEndpoint {
  guestName: string;
  guestPending?: string;
  guestPendingGuessed?: boolean;
}

function listedEndpoint(result: CliResult, sandbox: string, name: string): ListedEndpoint | undefined {
  expect(result.status, result.stderr).toBe(0);
  const listing = (JSON.parse(result.stdout) as Array<{ id: string; endpoints: ListedEndpoint[] }>).find(
    (entry) => entry.id === sandbox,
  );
  return listing?.endpoints.find((endpoint) => endpoint.guestName === name);
}

async function sandboxWithSlowGuest(id: string) {
  const { pod, node } = makePod();
  const before = fingerprint(pod);
  const guest = makeConfiguredGuest();
  const { agentPath } = await vm.attachAndStart(id, pod.path, stateDirectory());
  const agent = await serveNamespaceAgent(guest.path, agentPath, {
    linkAppearTimeoutMs: 120_000,
    sysfsRoot: stateDirectory(),
  });
  cleanup.defer(() => agent.stop());
  addEth9({ pod, node });
  const request = join(stateDirectory(), 'add.json');
  writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));
  return { pod, before, guest, request, state: ['--state-dir', stateDirectory()] };
}

describe.skipIf(skipReason !== undefined)('guestPending entries read from another PID namespace', () => {
  it('an add-iface in a child PID namespace is seen as waiting from the host: list says so, add-iface again says it still waits', async () => {
    const { pod, before, guest, request, state } = await sandboxWithSlowGuest('pa');
    const adding = vcnetInPidNamespace(['add-iface', 'pa', request, ...state]);
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'pa').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    // The add-iface is its namespace's first process: pid 1 there, the host's init here.
    expect(recordedPending(stateDirectory(), 'pa')[0]?.pid).toBe(1);

    const listed = listedEndpoint(vcnet(['list', '--json', ...state]), 'pa', 'net9');
    expect(listed?.guestPending).toBe('waiting');
    // The host sees the add-iface's namespace: a verdict by its process, not a guess.
    expect(listed?.guestPendingGuessed).toBeUndefined();
    const again = vcnet(['add-iface', 'pa', request, ...state]);
    expect(again.status, again.stderr).toBe(1);
    expect(again.stderr).toContain('is still waiting for the guest to configure it');
    // configure-guest leaves net9 to its add-iface (the guest does not show it yet) and its entry kept.
    // The guest's eth0 gets the MAC its NIC has from the pod's eth0, as in a VM.
    guest.exec('ip', ['link', 'set', 'eth0', 'address', linkMac(pod, 'eth0')]);
    const configured = await vcnetHere(['configure-guest', '--sandbox', 'pa', '--timeout', '20000', ...state]).done;
    expect(configured.status, configured.stderr).toBe(0);
    expect(recordedPending(stateDirectory(), 'pa').map((entry) => entry.name)).toEqual(['net9']);
    expect(adding.child.exitCode, 'add-iface still waiting for the guest').toBeNull();

    guest.exec('ip', ['link', 'add', 'net9', 'address', linkMac(pod, 'eth9'), 'type', 'veth', 'peer', 'name', 'nic9p']);
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(recordedPending(stateDirectory(), 'pa')).toEqual([]);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'pa', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 240_000);

  it('an add-iface on the host read from a child PID namespace (which cannot see it) is guessed waiting within its wait, and list says it is a guess', async () => {
    const { pod, before, guest, request, state } = await sandboxWithSlowGuest('pb');
    const adding = vcnetHere(['add-iface', 'pb', request, ...state]);
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'pb').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );

    const listed = listedEndpoint(await vcnetInPidNamespace(['list', '--json', ...state]).done, 'pb', 'net9');
    expect(listed?.guestPending).toBe('waiting');
    expect(listed?.guestPendingGuessed).toBe(true);
    const table = await vcnetInPidNamespace(['list', ...state]).done;
    expect(table.stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(waiting, guessed)');
    const again = await vcnetInPidNamespace(['add-iface', 'pb', request, ...state]).done;
    expect(again.status, again.stderr).toBe(1);
    expect(again.stderr).toContain('is still waiting for the guest to configure it');
    guest.exec('ip', ['link', 'set', 'eth0', 'address', linkMac(pod, 'eth0')]);
    const configured = await vcnetInPidNamespace(['configure-guest', '--sandbox', 'pb', '--timeout', '20000', ...state])
      .done;
    expect(configured.status, configured.stderr).toBe(0);
    expect(recordedPending(stateDirectory(), 'pb').map((entry) => entry.name)).toEqual(['net9']);
    expect(adding.child.exitCode, 'add-iface still waiting for the guest').toBeNull();

    guest.exec('ip', ['link', 'add', 'net9', 'address', linkMac(pod, 'eth9'), 'type', 'veth', 'peer', 'name', 'nic9p']);
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(recordedPending(stateDirectory(), 'pb')).toEqual([]);
    expect(recordedLinks(stateDirectory(), 'pb')).toEqual(['eth0', 'eth9']);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'pb', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 240_000);

  it("an add-iface and its readers in sibling PID namespaces (neither sees the other) guess by the add-iface's own recorded deadline, and say it is a guess", async () => {
    const { pod, before, guest, request, state } = await sandboxWithSlowGuest('ps');
    // A 10-minute lock wait: the add-iface keeps its entry up to its push (10 s of retries, 20 ms, 3 × 60 s)
    // + 600 s + 30 s, past the 4 minutes of the default.
    const adding = vcnetInPidNamespace(['add-iface', 'ps', request, ...state], { VCNET_LOCK_TIMEOUT: '600' });
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'ps').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    const [entry] = recordedPending(stateDirectory(), 'ps');
    expect(entry?.pid).toBe(1);
    expect(entry?.pidNamespace?.inode).not.toBe(statSync('/proc/self/ns/pid').ino);
    expect(Date.parse(entry?.waitsUntil ?? '') - Date.parse(entry?.since ?? '')).toBe(820_020);
    const until810 = (entry?.waitsUntil ?? '').replace(/\.\d{3}Z$/, 'Z');

    // Each reader is in a namespace of its own beside the add-iface's: no process of that one shows.
    const listed = listedEndpoint(await vcnetInPidNamespace(['list', '--json', ...state]).done, 'ps', 'net9');
    expect(listed).toMatchObject({ guestPending: 'waiting', guestPendingGuessed: true });
    const table = await vcnetInPidNamespace(['list', ...state]).done;
    expect(table.stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(waiting, guessed)');
    const again = await vcnetInPidNamespace(['add-iface', 'ps', request, ...state]).done;
    expect(again.status, again.stderr).toBe(1);
    expect(again.stderr).toContain(
      `is still waiting for the guest to configure it (guessed: it runs in a PID namespace not seen from here, so it is taken as waiting until its longest wait ends, at ${until810})`,
    );
    guest.exec('ip', ['link', 'set', 'eth0', 'address', linkMac(pod, 'eth0')]);
    const configured = await vcnetInPidNamespace(['configure-guest', '--sandbox', 'ps', '--timeout', '20000', ...state])
      .done;
    expect(configured.status, configured.stderr).toBe(0);
    expect(configured.stderr).toContain(
      `sandbox ps: net9 is left to the add-iface that plugged it, taken as still waiting for the guest to configure it (guessed: it runs in a PID namespace not seen from here, so it is taken as waiting until its longest wait ends, at ${until810})`,
    );
    expect(recordedPending(stateDirectory(), 'ps').map((pending) => pending.name)).toEqual(['net9']);
    expect(adding.child.exitCode, 'add-iface still waiting for the guest').toBeNull();

    // The entry as the add-iface would have written it 10 minutes ago: past the 4 minutes an entry
    // without a deadline is given, within its own 13.5: still waiting, by guess. Without its
    // deadline (an earlier build's entry): stopped, by guess.
    const file = join(stateDirectory(), 'ps', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    const since = Date.now() - 600_000;
    record.guestPending[0].since = new Date(since).toISOString();
    record.guestPending[0].waitsUntil = new Date(since + 820_020).toISOString();
    writeFileSync(file, JSON.stringify(record));
    const older = listedEndpoint(await vcnetInPidNamespace(['list', '--json', ...state]).done, 'ps', 'net9');
    expect(older).toMatchObject({ guestPending: 'waiting', guestPendingGuessed: true });
    delete record.guestPending[0].waitsUntil;
    writeFileSync(file, JSON.stringify(record));
    const earlierBuild = listedEndpoint(await vcnetInPidNamespace(['list', '--json', ...state]).done, 'ps', 'net9');
    expect(earlierBuild).toMatchObject({ guestPending: 'stopped', guestPendingGuessed: true });

    guest.exec('ip', ['link', 'add', 'net9', 'address', linkMac(pod, 'eth9'), 'type', 'veth', 'peer', 'name', 'nic9p']);
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(recordedPending(stateDirectory(), 'ps')).toEqual([]);
    expect(recordedLinks(stateDirectory(), 'ps')).toEqual(['eth0', 'eth9']);

    await vm.stopQemu();
    const detached = vcnet(['detach', '--sandbox', 'ps', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 240_000);

  it('an add-iface killed in a child PID namespace is seen as stopped from the host (its namespace is gone), not guessed', async () => {
    const { pod, before, request, state } = await sandboxWithSlowGuest('pk');
    const adding = vcnetInPidNamespace(['add-iface', 'pk', request, ...state]);
    cleanup.defer(async () => {
      adding.child.kill('SIGKILL');
      await adding.done;
    });
    await until(
      () => recordedPending(stateDirectory(), 'pk').some((entry) => entry.name === 'net9'),
      'net9 recorded as waiting for the guest',
      60_000,
    );
    // unshare's death kills the add-iface (--kill-child), the last process of its namespace.
    adding.child.kill('SIGKILL');
    await adding.done;
    await until(
      () => listedEndpoint(vcnet(['list', '--json', ...state]), 'pk', 'net9')?.guestPending === 'stopped',
      'net9 seen as stopped once its add-iface is gone',
      30_000,
    );
    expect(listedEndpoint(vcnet(['list', '--json', ...state]), 'pk', 'net9')?.guestPendingGuessed).toBeUndefined();
    const table = vcnet(['list', ...state]);
    expect(table.stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(stopped)');
    expect(table.stdout).toContain('the add-iface that plugged net9 was stopped while it waited for the guest');

    // The same entry as one an add-iface on the host wrote 10 minutes ago, read from a child PID
    // namespace (which sees no process of the host's): past the add-iface's longest wait, stopped by guess.
    const file = join(stateDirectory(), 'pk', 'state.json');
    const record = JSON.parse(readFileSync(file, 'utf8'));
    const hostNamespace = statSync('/proc/self/ns/pid');
    record.guestPending[0].pidNamespace = { device: hostNamespace.dev, inode: hostNamespace.ino };
    const since = Date.now() - 600_000;
    record.guestPending[0].since = new Date(since).toISOString();
    // Its own deadline as that add-iface recorded it (the default lock wait), long past too.
    record.guestPending[0].waitsUntil = new Date(since + 240_000).toISOString();
    writeFileSync(file, JSON.stringify(record));
    const guessed = listedEndpoint(await vcnetInPidNamespace(['list', '--json', ...state]).done, 'pk', 'net9');
    expect(guessed).toMatchObject({ guestPending: 'stopped', guestPendingGuessed: true });
    const guessedTable = await vcnetInPidNamespace(['list', ...state]).done;
    expect(guessedTable.stdout).toContain('net9<-eth9 virtual tcfilter guest-pending(stopped, guessed)');
    expect(guessedTable.stdout).toContain(
      'a guess for net9: the PID namespace of its command is not seen from here, and its longest wait for the guest has passed',
    );

    await vm.stopQemu();
    const removed = vcnet(['del-iface', 'pk', request, ...state]);
    expect(removed.status, removed.stderr).toBe(0);
    const detached = vcnet(['detach', '--sandbox', 'pk', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  }, 240_000);
});
