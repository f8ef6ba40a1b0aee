/**
 * add-iface, del-iface and watch's plugs on a Cloud Hypervisor VM that answers no request (slow or hung on another:
 * a guest slow to take a device, another client's request, a wedged VMM). Cloud Hypervisor's API
 * serves one request at a time, so such a VMM answers none. They used to send
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
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { stateDirectoryPerTest, vcnetAsync } from '../../helpers/cli.js';
import {
  attachOnCloudHypervisorStandIn,
  expectListIfacesAnswers,
  hangStandIn,
} from '../../helpers/cloud-hypervisor-sandbox.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { fingerprint, kataLinks } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-clh-hung-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A sandbox attached (eth0) on the API stand-in with eth9 in its pod, not yet added. */
async function sandboxOnStandIn(sandbox: string) {
  // The agent waits long enough for a test to play the VMM's part: the NIC showing in the guest.
  const { pod, guest, api, flag } = await attachOnCloudHypervisorStandIn(sandbox, stateDirectory(), stops, 30_000);
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
  /** Runs vcnet `args` with the VMM wait `waitSeconds`; killed after the test if still running. */
  const start = (args: string[], waitSeconds: number) => {
    const running = vcnetAsync([...args, ...flag, '--json'], { VCNET_QMP_CONNECT_TIMEOUT: String(waitSeconds) });
    stops.push(async () => {
      running.child.kill('SIGKILL');
      await running.done;
    });
    return running;
  };
  return { pod, guest, api, flag, endpoints, pings, changes, start };
}

/**
 * `command` (add-iface of eth9, del-iface of eth0) on sandbox `sandbox` with the stand-in hung: it
 * waits for vmm.ping without the lock (list-ifaces answers meanwhile), then fails saying the VMM is
 * slow or hung, having sent nothing else and changed nothing. Two runs, so that neither races a
 * clock: the first, given a wait longer than the test, is seen waiting without the lock (its second
 * ping, the one after the try under the lock, has come) and killed; the second, given 3 s, is
 * awaited for its error.
 */
async function expectWaitWithoutLockThenBusyError(sandbox: string, command: 'add-iface' | 'del-iface') {
  const { pod, api, flag, endpoints, pings, changes, start } = await sandboxOnStandIn(sandbox);
  const before = fingerprint(pod);
  const vmm = hangStandIn(api, stops);
  const request = writeRequest(stateDirectory(), 'request.json', { name: command === 'add-iface' ? 'eth9' : 'eth0' });
  const waiting = start([command, sandbox, request], 600);
  await until(() => pings() >= 2, `${command}'s vmm.ping without the lock`, 30_000);
  await expectListIfacesAnswers(sandbox, flag);
  expect(waiting.child.exitCode, `${command} still waiting for the VMM`).toBeNull();
  waiting.child.kill('SIGKILL');
  await waiting.done;

  const pingsBefore = pings();
  const failed = await start([command, sandbox, request], 3).done;
  expect(failed.status, failed.stderr).toBe(1);
  const { error } = JSON.parse(failed.stdout) as { error: { code: string; message: string; hint: string } };
  expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
  // The time measured, as gc's says it (it said the budget: "within 3000 ms in all, at most 1000 ms
  // of it under the sandbox's lock").
  const said = error.message.match(
    new RegExp(
      `sandbox ${sandbox}: its VM's Cloud Hypervisor API socket ${api.socketPath} did not answer ${command}'s vmm.ping within (\\d+) ms in all, (\\d+) ms of it under the sandbox's lock \\(at most 1000 ms\\), the rest without it`,
    ),
  );
  expect(said, error.message).not.toBeNull();
  const [inAllMs, underLockMs] = [Number(said?.[1]), Number(said?.[2])];
  expect(underLockMs).toBeGreaterThanOrEqual(999); // the first ping's bound under the lock, ran out
  expect(inAllMs).toBeGreaterThanOrEqual(2_999); // the rest of the 3 s without the lock after it
  expect(error.message).toContain(
    'Cloud Hypervisor answers one request at a time, so the VMM is slow or hung on another',
  );
  expect(error.hint).toContain('nothing was changed');
  expect(error.hint).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds>');
  // Each run: one ping under the lock, one without it; no vm.add-net or vm.remove-device; the host side as before.
  expect(pingsBefore).toBe(2);
  expect(pings() - pingsBefore).toBe(2);
  expect(changes()).toEqual([]);
  expect(endpoints()).toEqual(['eth0 tcfilter']);
  expect(kataLinks(pod)).toEqual(['tap0_kata']);
  expect(fingerprint(pod)).toEqual(before);
  vmm.release();
}

describe('add-iface and del-iface on a Cloud Hypervisor VM that answers no request', () => {
  it('add-iface waits for vmm.ping without the lock (list-ifaces answers meanwhile), then fails saying the VMM is slow or hung, nothing plugged or built', async () => {
    await expectWaitWithoutLockThenBusyError('ha', 'add-iface');
  }, 180_000);

  it('add-iface that waited without the lock plugs the NIC once the VMM answers again', async () => {
    const { guest, api, flag, endpoints, pings, start } = await sandboxOnStandIn('hr');
    const vmm = hangStandIn(api, stops);
    const adding = start(['add-iface', 'hr', writeRequest(stateDirectory(), 'add.json', { name: 'eth9' })], 60);
    await vmm.reached("add-iface's vmm.ping");
    await expectListIfacesAnswers('hr', flag);
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
    await expectWaitWithoutLockThenBusyError('hd', 'del-iface');
  }, 180_000);

  it("watch's plug of a new link waits for vmm.ping without the lock (list-ifaces answers meanwhile), then reports the VMM slow or hung, nothing built", async () => {
    const { pod, api, flag, endpoints, pings, changes } = await sandboxOnStandIn('hw');
    const previousWait = process.env.VCNET_QMP_CONNECT_TIMEOUT;
    stops.push(() => {
      if (previousWait === undefined) delete process.env.VCNET_QMP_CONNECT_TIMEOUT;
      else process.env.VCNET_QMP_CONNECT_TIMEOUT = previousWait;
    });
    hangStandIn(api, stops);
    /** A watch of hw that waits `waitSeconds` for the VMM, and eth9 added once it runs: the change it plugs. */
    const watchEth9Added = async (waitSeconds: number) => {
      process.env.VCNET_QMP_CONNECT_TIMEOUT = String(waitSeconds);
      pod.exec('ip', ['link', 'del', 'eth9']); // added again below, once the watch runs
      const errors: Error[] = [];
      const watching = await watchSandbox('hw', {
        stateDirectory: flag[1]!,
        debounceMs: 0,
        onError: (error) => errors.push(error),
      });
      stops.push(() => watching.stop());
      pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
      pod.exec('ip', ['link', 'set', 'eth9', 'up']);
      pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
      return { watching, errors };
    };
    // Two watches, so that neither races a clock. The first, given a wait longer than the test, is
    // seen waiting without the lock (its second ping, the one after the try under the lock, has
    // come) while list-ifaces answers, and is stopped.
    const first = await watchEth9Added(600);
    await until(() => pings() >= 2, "watch's vmm.ping without the lock", 30_000);
    await expectListIfacesAnswers('hw', flag);
    expect(first.errors, 'the watch still waiting for the VMM').toEqual([]);
    await first.watching.stop();
    // The second, given 3 s, is awaited for its error.
    const second = await watchEth9Added(3);
    await until(() => second.errors.length > 0, "watch's error", 60_000);
    const [error] = second.errors;
    const inAllMs = Number(error?.message.match(/did not answer watch's vmm\.ping within (\d+) ms in all, /)?.[1]);
    expect(inAllMs, error?.message).toBeGreaterThanOrEqual(2_999);
    expect(error?.message).toContain('the VMM is slow or hung on another');
    expect(changes()).toEqual([]);
    expect(endpoints()).toEqual(['eth0 tcfilter']);
    expect(kataLinks(pod)).toEqual(['tap0_kata']);
  }, 180_000);

  it('a VMM that answers vmm.ping without the lock but never under it: the error counts every try under the lock, and says it answered in between', async () => {
    const { pod, api, endpoints, pings, changes, start } = await sandboxOnStandIn('hc');
    const before = fingerprint(pod);
    // Busy on another request whenever add-iface holds the lock (its pings there hang), free whenever it
    // waits without it (those answer): the pings alternate, under the lock first and last.
    const pingPath = '/api/v1/vmm.ping';
    const answer = JSON.stringify({ version: '53.0.0' });
    for (let pair = 0; pair < 20; pair++) {
      api.replies.push({ status: 0, reason: '', answer: 'hang', path: pingPath });
      api.replies.push({ status: 200, reason: 'OK', body: answer, path: pingPath });
    }
    const failed = await start(['add-iface', 'hc', writeRequest(stateDirectory(), 'add.json', { name: 'eth9' })], 4)
      .done;
    expect(failed.status, failed.stderr).toBe(1);
    const { error } = JSON.parse(failed.stdout) as { error: { code: string; message: string; hint: string } };
    expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
    const triesUnderLock = (pings() + 1) / 2;
    expect(pings() % 2, `pings alternate and end under the lock: ${error.message}`).toBe(1);
    expect(triesUnderLock).toBeGreaterThan(1);
    // Measured: each try under the lock after an answer gets its whole second, past the 4 s budget.
    const said = error.message.match(
      new RegExp(
        `did not answer add-iface's vmm.ping under the sandbox's lock within (\\d+) ms in all, (\\d+) ms of it in ${triesUnderLock} tries under the sandbox's lock \\(at most 1000 ms each, vmm.ping answered in between without it\\)`,
      ),
    );
    expect(said, error.message).not.toBeNull();
    const [inAllMs, underLockMs] = [Number(said?.[1]), Number(said?.[2])];
    expect(underLockMs).toBeGreaterThanOrEqual(999 * triesUnderLock); // each ran out its bound
    expect(inAllMs).toBeGreaterThanOrEqual(underLockMs);
    expect(error.message).not.toContain("at most 1000 ms of it under the sandbox's lock");
    expect(error.hint).toContain('nothing was changed');
    expect(changes()).toEqual([]);
    expect(endpoints()).toEqual(['eth0 tcfilter']);
    expect(fingerprint(pod)).toEqual(before);
  }, 180_000);

  // Told as cloudHypervisorPingFailure tells it, as under the lock: a reply that is not the API's is
  // an answer. The wait without the lock took it for none, and the next try under the lock got only
  // what was left of the budget (about half a second here), not its whole second.
  it("a reply to vmm.ping that is not the API's, without the lock, is an answer: the try under the lock after it gets its whole bound", async () => {
    const { pod, api, endpoints, pings, changes, start } = await sandboxOnStandIn('hn');
    const before = fingerprint(pod);
    const pingPath = '/api/v1/vmm.ping';
    // Under the lock: no answer; without it: the connection closed with no reply; under it again: no answer.
    api.replies.push({ status: 0, reason: '', answer: 'hang', path: pingPath });
    api.replies.push({ status: 0, reason: '', answer: 'close', path: pingPath });
    api.replies.push({ status: 0, reason: '', answer: 'hang', path: pingPath });
    const failed = await start(['add-iface', 'hn', writeRequest(stateDirectory(), 'add.json', { name: 'eth9' })], 1.5)
      .done;
    expect(failed.status, failed.stderr).toBe(1);
    const { error } = JSON.parse(failed.stdout) as { error: { code: string; message: string; hint: string } };
    expect(error.code).toBe('VCNET_HYPERVISOR_UNREACHABLE');
    expect(pings()).toBe(3);
    const said = error.message.match(
      /did not answer add-iface's vmm\.ping under the sandbox's lock within (\d+) ms in all, (\d+) ms of it in 2 tries under the sandbox's lock \(at most 1000 ms each, vmm\.ping answered in between without it\)/,
    );
    expect(said, error.message).not.toBeNull();
    const [inAllMs, underLockMs] = [Number(said?.[1]), Number(said?.[2])];
    expect(underLockMs).toBeGreaterThanOrEqual(2 * 999); // both tries ran out their whole second
    expect(inAllMs).toBeGreaterThanOrEqual(underLockMs);
    expect(error.hint).toContain('nothing was changed');
    expect(changes()).toEqual([]);
    expect(endpoints()).toEqual(['eth0 tcfilter']);
    expect(fingerprint(pod)).toEqual(before);
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

  it('after a failed push, add-iface asks vmm.ping under the lock taken again before vm.remove-device: a VMM busy since keeps the NIC for del-iface, no removal sent', async () => {
    // The guest never shows the NIC: the agent gives up after 2 s, and add-iface's push fails.
    const { pod, api, flag } = await attachOnCloudHypervisorStandIn('hf', stateDirectory(), stops, 2_000);
    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    const pingPath = '/api/v1/vmm.ping';
    const pingsBefore = api.requests.filter((each) => each.path === pingPath).length;
    // The ping before the plug answers; the one after the push (the lock given back meanwhile) hangs.
    api.replies.push({ status: 200, reason: 'OK', body: JSON.stringify({ version: '53.0.0' }), path: pingPath });
    api.replies.push({ status: 0, reason: '', answer: 'hang', path: pingPath });
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
    const failed = await vcnetAsync(['add-iface', 'hf', request, ...flag]).done;
    expect(failed.status, failed.stderr).toBe(1);
    // It sent vm.remove-device with the 5 s bound, the VMM's lock-holding request, without asking first.
    const changes = api.requests.filter((each) => each.path !== pingPath).map((each) => each.path);
    expect(changes).toEqual(['/api/v1/vm.add-net']);
    expect(api.requests.filter((each) => each.path === pingPath).length - pingsBefore).toBe(2);
    expect(failed.stderr).toContain('GET /api/v1/vmm.ping: no reply within 1000 ms');
    expect(failed.stderr).toContain('the VM did not answer, so net1 could not be unplugged');
    expect(failed.stderr).toContain('`vcnet del-iface` removes the interface once its control socket answers');
    const record = JSON.parse(readFileSync(join(stateDirectory(), 'hf', 'state.json'), 'utf8')) as {
      unplugUnfinished?: Array<{ name: string }>;
    };
    expect((record.unplugUnfinished ?? []).map((entry) => entry.name)).toEqual(['net9']);
    expect(kataLinks(pod)).toEqual(['tap0_kata', 'tap1_kata']);

    // del-iface finishes it once the VMM answers: vm.remove-device, then the host side.
    const removed = await vcnetAsync([
      'del-iface',
      'hf',
      writeRequest(stateDirectory(), 'del.json', { name: 'net9' }),
      ...flag,
    ]).done;
    expect(removed.status, removed.stderr).toBe(0);
    expect(api.requests.filter((each) => each.path !== pingPath).map((each) => each.path)).toEqual([
      '/api/v1/vm.add-net',
      '/api/v1/vm.remove-device',
    ]);
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    expect(kataLinks(pod)).toEqual(['tap0_kata']);
    pod.exec('ip', ['link', 'del', 'eth9']);
  }, 180_000);

  it("after a failed push, a VMM that answers add-iface's vmm.ping under the lock, then hangs on vm.remove-device: the NIC is kept for del-iface after remove-device's 5 s, not taken for removed", async () => {
    // The guest never shows the NIC: the agent gives up after 2 s, and add-iface's push fails.
    const { pod, api, flag } = await attachOnCloudHypervisorStandIn('hv', stateDirectory(), stops, 2_000);
    pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    const pingPath = '/api/v1/vmm.ping';
    // Both pings answer (before the plug, and under the lock taken again after the push); the removal hangs.
    api.replies.push({ status: 0, reason: '', answer: 'hang', path: '/api/v1/vm.remove-device' });
    const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
    const failed = await vcnetAsync(['add-iface', 'hv', request, ...flag]).done;
    expect(failed.status, failed.stderr).toBe(1);
    const paths = api.requests.map((each) => each.path);
    expect(paths.filter((path) => path !== pingPath)).toEqual(['/api/v1/vm.add-net', '/api/v1/vm.remove-device']);
    // The ping under the lock came right before the removal it let through.
    expect(paths.at(-2)).toBe(pingPath);
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    expect(failed.stderr).toContain('PUT /api/v1/vm.remove-device: no reply within 5000 ms');
    expect(failed.stderr).toContain('`vcnet del-iface` removes the interface once its control socket answers');
    const record = JSON.parse(readFileSync(join(stateDirectory(), 'hv', 'state.json'), 'utf8')) as {
      unplugUnfinished?: Array<{ name: string }>;
      guestPending?: unknown[];
    };
    expect((record.unplugUnfinished ?? []).map((entry) => entry.name)).toEqual(['net9']);
    expect(record.guestPending).toBeUndefined();
    expect(kataLinks(pod)).toEqual(['tap0_kata', 'tap1_kata']);
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
