/**
 * add-iface and del-iface on a Cloud Hypervisor VM that answers no request (slow or hung on another:
 * a guest slow to take a device, another client's request, a wedged VMM). Cloud Hypervisor's API
 * serves one request at a time, so such a VMM answers none. add-iface and del-iface used to send
 * vm.add-net / vm.remove-device under the sandbox's lock and wait the client's 30 s for the answer:
 * every other command on the sandbox failed on the lock meanwhile (VCNET_SANDBOX_LOCKED). They now ask
 * vmm.ping (which changes nothing) first, holding the lock for at most a second of it, and wait for
 * it without the lock for as long as they wait for a busy QMP (VCNET_QMP_CONNECT_TIMEOUT): other
 * commands answer meanwhile, and a VMM silent past that wait fails the command with nothing changed.
 * The VMM is Cloud Hypervisor's API stand-in, which validates every request against the published
 * OpenAPI schema.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { serveNamespaceAgent } from '../../helpers/namespace-agent.js';
import { fingerprint, kataLinks, makeConfiguredGuest, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-clh-hung-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A sandbox attached (eth0) on the API stand-in with eth9 in its pod, not yet added. */
async function sandboxOnStandIn(sandbox: string) {
  const { pod } = makePod();
  const api = await FakeCloudHypervisor.start();
  stops.push(() => api.stop());
  // add-iface reaches the agent before it plugs anything: one serves a namespace playing the guest.
  const agentPath = join(stateDirectory(), 'agent.sock');
  const guest = makeConfiguredGuest();
  // Long enough for a test to play the VMM's part: the NIC showing in the guest once it was plugged.
  const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs: 30_000 });
  stops.push(() => agent.stop());
  const flag = ['--state-dir', stateDirectory()];
  const attached = await vcnetAsync([
    ...['attach', '--sandbox', sandbox, '--netns', pod.path, ...flag],
    ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
  ]).done;
  expect(attached.status, attached.stderr).toBe(0);
  pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
  pod.exec('ip', ['link', 'set', 'eth9', 'up']);
  pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
  const recordPath = join(stateDirectory(), sandbox, 'state.json');
  const endpoints = () =>
    (
      JSON.parse(readFileSync(recordPath, 'utf8')) as {
        network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
      }
    ).network.endpoints.map((endpoint) => `${endpoint.name} ${endpoint.plumbing.model}`);
  const pings = () => api.requests.filter((each) => each.path === '/api/v1/vmm.ping').length;
  const changes = () => api.requests.filter((each) => each.path !== '/api/v1/vmm.ping').map((each) => each.path);
  /** The stand-in stuck from now on (released after the test, before it stops), and a wait for the command's first request. */
  const hangVmm = () => {
    const release = api.hang();
    stops.push(release);
    const requestsBefore = api.requests.length;
    return {
      release,
      reached: (what: string) => until(() => api.requests.length > requestsBefore, what, 30_000),
    };
  };
  /** Runs vcnet `args` with the VMM wait `waitSeconds`; killed after the test if still running. */
  const start = (args: string[], waitSeconds: number) => {
    const running = vcnetAsync([...args, ...flag, '--json'], { VCNET_QMP_CONNECT_TIMEOUT: String(waitSeconds) });
    stops.push(async () => {
      running.child.kill('SIGKILL');
      await running.done;
    });
    return running;
  };
  /** list-ifaces answers, waiting at most 5 s for the sandbox's lock: the command that waits does not hold it. */
  const expectListIfacesAnswers = async () => {
    const listed = await vcnetAsync(['list-ifaces', sandbox, '--json', ...flag], { VCNET_LOCK_TIMEOUT: '5' }).done;
    expect(listed.stderr).not.toContain('is being changed by process');
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('"eth0"');
  };
  return { pod, guest, api, flag, endpoints, pings, changes, hangVmm, start, expectListIfacesAnswers };
}

/** The error a command that waited for a silent VMM for `seconds` ends with, checked. */
function expectBusyVmmError(
  stdout: string,
  { command, seconds, socket, sandbox }: { command: string; seconds: number; socket: string; sandbox: string },
): void {
  const { error } = JSON.parse(stdout) as { error: { code: string; message: string; hint: string } };
  expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
  expect(error.message).toContain(
    `sandbox ${sandbox}: its VM's Cloud Hypervisor API socket ${socket} did not answer ${command}'s vmm.ping within ${seconds * 1000} ms in all, at most 1000 ms of it under the sandbox's lock`,
  );
  expect(error.message).toContain(
    'Cloud Hypervisor answers one request at a time, so the VMM is slow or hung on another',
  );
  expect(error.hint).toContain('nothing was changed');
  expect(error.hint).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds>');
}

describe('add-iface and del-iface on a Cloud Hypervisor VM that answers no request', () => {
  it('add-iface waits for vmm.ping without the lock (list-ifaces answers meanwhile), then fails saying the VMM is slow or hung, nothing plugged or built', async () => {
    const { pod, api, endpoints, pings, changes, hangVmm, start, expectListIfacesAnswers } =
      await sandboxOnStandIn('ha');
    const before = fingerprint(pod);
    const vmm = hangVmm();
    const adding = start(['add-iface', 'ha', writeRequest(stateDirectory(), 'add.json', { name: 'eth9' })], 20);
    await vmm.reached("add-iface's vmm.ping");
    await expectListIfacesAnswers();
    expect(adding.child.exitCode, 'add-iface still waiting for the VMM').toBeNull();

    const failed = await adding.done;
    expect(failed.status, failed.stderr).toBe(1);
    expectBusyVmmError(failed.stdout, { command: 'add-iface', seconds: 20, socket: api.socketPath, sandbox: 'ha' });
    // One ping under the lock, one without it; no vm.add-net; the host side as before.
    expect(pings()).toBe(2);
    expect(changes()).toEqual([]);
    expect(endpoints()).toEqual(['eth0 tcfilter']);
    expect(kataLinks(pod)).toEqual(['tap0_kata']);
    expect(fingerprint(pod)).toEqual(before);
    vmm.release();
  }, 180_000);

  it('add-iface that waited without the lock plugs the NIC once the VMM answers again', async () => {
    const { guest, api, endpoints, pings, hangVmm, start, expectListIfacesAnswers } = await sandboxOnStandIn('hr');
    const vmm = hangVmm();
    const adding = start(['add-iface', 'hr', writeRequest(stateDirectory(), 'add.json', { name: 'eth9' })], 60);
    await vmm.reached("add-iface's vmm.ping");
    await expectListIfacesAnswers();
    expect(adding.child.exitCode, 'add-iface still waiting for the VMM').toBeNull();
    expect(api.requests.filter((each) => each.path === '/api/v1/vm.add-net')).toEqual([]);

    vmm.release();
    // The stand-in plays no device: the NIC it was given shows in the guest as a link with its MAC.
    const addNets = () => api.requests.filter((each) => each.path === '/api/v1/vm.add-net');
    await until(() => addNets().length > 0, 'vm.add-net', 60_000);
    const { mac } = addNets()[0]!.body as { mac: string };
    guest.exec('ip', ['link', 'add', 'eth1', 'address', mac, 'type', 'veth', 'peer', 'name', 'eth1p']);
    const added = await adding.done;
    expect(added.status, added.stderr).toBe(0);
    expect(addNets()).toHaveLength(1);
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    // Pings: under the lock (timed out), without it (answered once released), under it again.
    expect(pings()).toBe(3);
    expect(endpoints()).toEqual(['eth0 tcfilter', 'eth9 tcfilter']);
  }, 180_000);

  it('del-iface waits for vmm.ping without the lock (list-ifaces answers meanwhile), then fails saying the VMM is slow or hung, the interface kept', async () => {
    const { pod, api, endpoints, pings, changes, hangVmm, start, expectListIfacesAnswers } =
      await sandboxOnStandIn('hd');
    const before = fingerprint(pod);
    const vmm = hangVmm();
    const removing = start(['del-iface', 'hd', writeRequest(stateDirectory(), 'del.json', { name: 'eth0' })], 20);
    await vmm.reached("del-iface's vmm.ping");
    await expectListIfacesAnswers();
    expect(removing.child.exitCode, 'del-iface still waiting for the VMM').toBeNull();

    const failed = await removing.done;
    expect(failed.status, failed.stderr).toBe(1);
    expectBusyVmmError(failed.stdout, { command: 'del-iface', seconds: 20, socket: api.socketPath, sandbox: 'hd' });
    expect(pings()).toBe(2);
    expect(changes()).toEqual([]);
    expect(endpoints()).toEqual(['eth0 tcfilter']);
    expect(kataLinks(pod)).toEqual(['tap0_kata']);
    expect(fingerprint(pod)).toEqual(before);
    vmm.release();
  }, 180_000);

  it("a VMM that answers vmm.ping, then hangs on vm.add-net: add-iface waits 5 s for it under the lock (not the client's 30 s), takes the NIC out and undoes the host side", async () => {
    const { pod, api, endpoints, changes, start } = await sandboxOnStandIn('hp');
    const before = fingerprint(pod);
    api.replies.push({ status: 0, reason: '', answer: 'hang', path: '/api/v1/vm.add-net' });
    const failed = await start(['add-iface', 'hp', writeRequest(stateDirectory(), 'add.json', { name: 'eth9' })], 20)
      .done;
    expect(failed.status, failed.stderr).toBe(1);
    const { error } = JSON.parse(failed.stdout) as { error: { code: string; message: string } };
    expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
    expect(error.message).toContain('PUT /api/v1/vm.add-net: no reply within 5000 ms');
    // The plug may have arrived: it is taken out (valid by the schema), and the host side undone.
    expect(changes()).toEqual(['/api/v1/vm.add-net', '/api/v1/vm.remove-device']);
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    expect(endpoints()).toEqual(['eth0 tcfilter']);
    expect(kataLinks(pod)).toEqual(['tap0_kata']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);

  it('with the VMM answering, del-iface removes the NIC as before: one vmm.ping, then vm.remove-device', async () => {
    const { pod, api, endpoints, pings, changes, start } = await sandboxOnStandIn('hn');
    const removed = await start(['del-iface', 'hn', writeRequest(stateDirectory(), 'del.json', { name: 'eth0' })], 30)
      .done;
    expect(removed.status, removed.stderr).toBe(0);
    expect(pings()).toBe(1);
    expect(changes()).toEqual(['/api/v1/vm.remove-device']);
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    expect(endpoints()).toEqual([]);
    expect(kataLinks(pod)).toEqual([]);
  }, 180_000);
});
