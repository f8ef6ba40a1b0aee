/**
 * Pieces of the tests of commands on a sandbox whose VM keeps them waiting (QMP held by another
 * client, an agent not there yet): a sandbox whose paused VM sits behind a relay on the recorded QMP
 * socket that counts connections, a client holding QEMU's QMP, an agent that never answers, a
 * second pod link to add (and its NIC in a guest, its add-iface request), vcnet commands left
 * running (and seen waiting for QMP), list-ifaces answering meanwhile, and the links a record holds.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { QmpClient } from '../../src/hypervisor/qmp.js';
import type { TestCleanup } from './cleanup.js';
import { vcnetAsync } from './cli.js';
import { writeRequest } from './hotplug-guest.js';
import type { TestNamespace } from './namespace.js';
import { fingerprint, linkMac, makePod } from './pod.js';
import { untilInfoNetwork } from './qmp-look.js';
import { until } from './until.js';

const QMP_RELAY = fileURLToPath(new URL('./qmp-hold.py', import.meta.url));

/**
 * A relay (qmp-hold.py) on the recorded QMP socket: counts the connections it took. Plain (`-`), or
 * `+take`: it takes QEMU's QMP itself once its first client has gone, until `letGo()`; `output()`
 * has its lines ("N> COMMAND" for what client N sent). Killed after the test.
 */
export async function relayQmp(
  cleanup: TestCleanup,
  recordedPath: string,
  qemuPath: string,
  qemuPid: number,
  mode: '-' | '+take' = '-',
): Promise<{ accepted: () => number; output: () => string; letGo: () => void }> {
  const relay = spawn('python3', [QMP_RELAY, recordedPath, qemuPath, mode, String(qemuPid)]);
  cleanup.defer(() => relay.kill('SIGKILL'));
  let output = '';
  relay.stdout.on('data', (data: Buffer) => {
    output += String(data);
  });
  relay.stderr.on('data', (data: Buffer) => {
    output += String(data);
  });
  await until(() => output.includes('listening'), 'the QMP relay to listen', 15_000);
  return {
    accepted: () => output.split('\n').filter((line) => line === 'accepted').length,
    output: () => output,
    letGo: () => relay.stdin.write('\n'),
  };
}

/**
 * Sandboxes for one test file: `(sandbox, mode)` attaches `sandbox` (eth0) on a new pod in the test's
 * state directory and starts its paused VM (`vm`, the file's sandboxVmFixture) on QEMU's own QMP
 * socket (`qemuQmpPath`), with a relay (relayQmp, plain or `mode` '+take') on the recorded one
 * (`qmpPath`). `before`: the pod as made, before the attach; `state`: the --state-dir flag.
 */
export function sandboxesBehindRelay<Started extends { qemu: { pid: number }; qmpPath: string }>(
  vm: {
    attachAndStart(
      sandbox: string,
      podPath: string,
      directory: string,
      options: { qemuQmpPath: string },
    ): Promise<Started>;
  },
  cleanup: TestCleanup,
  stateDirectory: () => string,
) {
  return async (sandbox: string, mode?: '+take') => {
    const { pod, node } = makePod();
    const before = fingerprint(pod);
    const qemuQmpPath = join(stateDirectory(), 'qemu-qmp.sock');
    const started = await vm.attachAndStart(sandbox, pod.path, stateDirectory(), { qemuQmpPath });
    const relay = await relayQmp(cleanup, started.qmpPath, qemuQmpPath, started.qemu.pid, ...(mode ? [mode] : []));
    return { pod, node, before, state: ['--state-dir', stateDirectory()], qemuQmpPath, ...started, relay };
  };
}

/** vcnet `args` (with `env`) run in the background: killed after the test if it is still running. */
export function vcnetKilledAfterTest(cleanup: TestCleanup, args: string[], env: Record<string, string> = {}) {
  const running = vcnetAsync(args, env);
  cleanup.defer(async () => {
    running.child.kill('SIGKILL');
    await running.done;
  });
  return running;
}

/**
 * vcnet `args` (VCNET_QMP_CONNECT_TIMEOUT `qmpWaitSeconds`, and `env`) run in the background, once it
 * has connected to `relay` on the recorded QMP socket: it waits for QEMU's greeting, which another
 * client holds. Killed after the test if still running.
 */
export async function vcnetWaitingForQmp(
  cleanup: TestCleanup,
  args: string[],
  relay: { accepted: () => number },
  qmpWaitSeconds: string,
  env: Record<string, string> = {},
): Promise<ReturnType<typeof vcnetAsync>> {
  const acceptedBefore = relay.accepted();
  const running = vcnetKilledAfterTest(cleanup, args, { VCNET_QMP_CONNECT_TIMEOUT: qmpWaitSeconds, ...env });
  await until(() => relay.accepted() > acceptedBefore, `${args[0]}'s QMP connection`, 30_000);
  return running;
}

/**
 * list-ifaces of `sandbox` (state directory `directory`) answers, waiting at most
 * `lockTimeoutSeconds` for the sandbox's lock: nothing holds it for long. The sandbox's agent is
 * silent or absent in these tests, so the recorded view answers either way: --timeout spares the
 * list's 3 s wait for the agent, which they would only sit out.
 */
export async function expectListIfacesAnswers(
  directory: string,
  sandbox: string,
  lockTimeoutSeconds: string,
): Promise<void> {
  const listed = await vcnetAsync(['list-ifaces', sandbox, '--json', '--timeout', '100', '--state-dir', directory], {
    VCNET_LOCK_TIMEOUT: lockTimeoutSeconds,
  }).done;
  expect(listed.stderr).not.toContain('is being changed by process');
  expect(listed.status, listed.stderr).toBe(0);
  expect(listed.stdout).toContain('"eth0"');
}

/** VCNET_QMP_CONNECT_TIMEOUT for this process's own library calls, put back after the test. */
export function qmpConnectTimeoutHere(cleanup: TestCleanup, seconds: string): void {
  const previous = process.env.VCNET_QMP_CONNECT_TIMEOUT;
  process.env.VCNET_QMP_CONNECT_TIMEOUT = seconds;
  cleanup.defer(() => {
    if (previous === undefined) delete process.env.VCNET_QMP_CONNECT_TIMEOUT;
    else process.env.VCNET_QMP_CONNECT_TIMEOUT = previous;
  });
}

/** Waits until QEMU has the NIC of the second endpoint (net1). */
export async function expectNet1InQemu(qemuQmpPath: string): Promise<void> {
  const network = await untilInfoNetwork(qemuQmpPath, (text) => text.includes('netdev-net1'), 'net1 in QEMU', {
    timeoutMs: 60_000,
    handshakeTimeoutMs: 15_000,
  });
  expect(network).toContain('netdev-net1');
}

/** Another client holding QEMU's QMP until `release()` (or the test's end). */
export async function holdQmp(cleanup: TestCleanup, qemuQmpPath: string): Promise<{ release: () => Promise<void> }> {
  const holder = await QmpClient.connect(qemuQmpPath, { timeoutMs: 20_000 });
  let open = true;
  const release = async () => {
    if (!open) return;
    open = false;
    await holder.close();
  };
  cleanup.defer(release);
  return { release };
}

/**
 * An agent socket that takes connections and never answers (it reads, so a client that goes is seen
 * gone); its connections, which a test destroys to end a wait, and its listener go after the test.
 */
export async function serveSilentAgent(cleanup: TestCleanup, path: string): Promise<Socket[]> {
  const connections: Socket[] = [];
  const agent = createServer((socket) => {
    connections.push(socket);
    socket.resume();
  });
  await new Promise<void>((resolve) => agent.listen(path, resolve));
  cleanup.defer(async () => {
    for (const socket of connections) socket.destroy();
    await new Promise<void>((resolve) => agent.close(() => resolve()));
  });
  return connections;
}

/** A second pod link, eth9 (10.209.0.2/24, up), its veth peer in the node namespace. */
export function addEth9({ pod, node }: Pick<ReturnType<typeof makePod>, 'pod' | 'node'>): void {
  node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
  pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
  pod.exec('ip', ['link', 'set', 'eth9', 'up']);
}

/**
 * A sandbox of sandboxesBehindRelay made ready for an add-iface of eth9: an agent that never answers
 * on its agent socket (`agentConnections`, serveSilentAgent's), eth9 in its pod (addEth9) and
 * `request`, the add-iface request for it (net9), written in `directory`.
 */
export async function eth9ToAdd(
  cleanup: TestCleanup,
  directory: string,
  sandbox: Pick<ReturnType<typeof makePod>, 'pod' | 'node'> & { agentPath: string },
): Promise<{ agentConnections: Socket[]; request: string }> {
  const agentConnections = await serveSilentAgent(cleanup, sandbox.agentPath);
  addEth9(sandbox);
  const request = writeRequest(directory, 'add.json', { device: 'eth9', name: 'net9' });
  return { agentConnections, request };
}

/** The guest's NIC for eth9 (addEth9): a link nic9 with the pod link's MAC, as the plugged NIC gets it. That MAC. */
export function addGuestNic9(guest: TestNamespace, pod: TestNamespace): string {
  const mac = linkMac(pod, 'eth9');
  guest.exec('ip', ['link', 'add', 'nic9', 'address', mac, 'type', 'veth', 'peer', 'name', 'nic9p']);
  return mac;
}

/** The pod links of the endpoints sandbox `sandbox`'s record holds. */
export function recordedLinks(directory: string, sandbox: string): string[] {
  const record = JSON.parse(readFileSync(join(directory, sandbox, 'state.json'), 'utf8'));
  return record.network.endpoints.map(
    (endpoint: { properties: { link: { name: string } } }) => endpoint.properties.link.name,
  );
}
