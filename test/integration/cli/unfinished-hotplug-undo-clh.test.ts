/**
 * A hot-plug left half-done in a running Cloud Hypervisor VM: add-iface killed right after the VMM
 * took the NIC (vm.add-net answered) leaves the endpoint 'pending' in the record. `vcnet gc` and a
 * watch that starts undo it through the VM first (vm.remove-device of the NIC's id; 404 means the NIC
 * never got there), then the host side; a VMM that answers remove-device with another error may
 * still hold the NIC, so the endpoint, its tap and its record stay. The VMM is Cloud Hypervisor's API
 * stand-in, which validates every request against the published OpenAPI schema.
 *
 * Cloud Hypervisor answers one API request at a time, so a VMM slow or hung on one answers none:
 * gc and watch used to send vm.remove-device under the sandbox's lock and wait the client's 30 s for
 * it, and every other command on the sandbox failed on the lock meanwhile. They now ask vmm.ping
 * (which changes nothing) without the lock first, as long as they wait for a busy QMP, and send the
 * removal only once it answers; a VMM silent past that wait is left alone, and said.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { killAfterHotplug, stateDirectoryPerTest, vcnetAsync } from '../../helpers/cli.js';
import {
  attachOnCloudHypervisorStandIn,
  expectListIfacesAnswers,
  hangStandIn,
} from '../../helpers/cloud-hypervisor-sandbox.js';
import { writeRequest } from '../../helpers/hotplug-guest.js';
import { fingerprint, kataLinks } from '../../helpers/pod.js';
import { expectUnfinishedLeftForNextGc } from './gc-left-unfinished.js';

const stateDirectory = stateDirectoryPerTest('vcnet-unfinished-clh-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A sandbox on the API stand-in with eth9 half hot-plugged: add-iface killed once add-net was answered. */
async function halfPlugged(sandbox: string) {
  const { pod, before, api, flag } = await attachOnCloudHypervisorStandIn(sandbox, stateDirectory(), stops, 2_000);
  pod.exec('ip', ['link', 'add', 'eth9', 'type', 'veth', 'peer', 'name', 'peer9']);
  pod.exec('ip', ['link', 'set', 'eth9', 'up']);
  pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
  const request = writeRequest(stateDirectory(), 'add.json', { device: 'eth9', name: 'net9' });
  const killed = await vcnetAsync(['add-iface', sandbox, request, ...flag], killAfterHotplug()).done;
  expect(killed.status, killed.stderr).toBe(-1); // SIGKILL
  const record = () =>
    JSON.parse(readFileSync(join(stateDirectory(), sandbox, 'state.json'), 'utf8')) as {
      network: { endpoints: Array<{ name: string; plumbing: { model: string } }> };
    };
  expect(record().network.endpoints.map((endpoint) => [endpoint.name, endpoint.plumbing.model])).toEqual([
    ['eth0', 'tcfilter'],
    ['net9', 'pending'],
  ]);
  const added = api.requests.filter((each) => each.path === '/api/v1/vm.add-net');
  expect(added).toHaveLength(1);
  const nicId = (added[0]!.body as { id: string }).id;
  expect(api.heldIds.has(nicId)).toBe(true);
  expect(kataLinks(pod)).toEqual(['tap0_kata', 'tap1_kata']);
  const removals = () =>
    api.requests.filter((each) => each.path === '/api/v1/vm.remove-device').map((each) => each.body);
  /** After `calls` remove-device requests of the NIC's id (each valid by the schema), the endpoint stayed whole, or went. */
  const expectRemovals = (calls: number, outcome: 'kept' | 'undone') => {
    expect(removals()).toEqual(Array.from({ length: calls }, () => ({ id: nicId })));
    expect(api.requests.every((each) => each.schemaErrors === undefined)).toBe(true);
    const endpoints = record().network.endpoints.map((endpoint) => `${endpoint.name} ${endpoint.plumbing.model}`);
    expect(endpoints).toEqual(outcome === 'kept' ? ['eth0 tcfilter', 'net9 pending'] : ['eth0 tcfilter']);
    expect(kataLinks(pod)).toEqual(outcome === 'kept' ? ['tap0_kata', 'tap1_kata'] : ['tap0_kata']);
  };
  const detach = async () => {
    const detached = await vcnetAsync(['detach', '--sandbox', sandbox, ...flag]).done;
    expect(detached.status, detached.stderr).toBe(0);
    pod.exec('ip', ['link', 'del', 'eth9']);
    expect(fingerprint(pod)).toEqual(before);
  };
  /** The vmm.ping requests the stand-in got since add-iface's (which asks one before it plugs). */
  const allPings = () =>
    api.requests.filter((each) => each.method === 'GET' && each.path === '/api/v1/vmm.ping').length;
  const pingsBefore = allPings();
  const pings = () => allPings() - pingsBefore;
  const hangVmm = () => hangStandIn(api, stops);
  return { pod, api, flag, nicId, expectRemovals, detach, pings, hangVmm };
}

describe('an unfinished hot-plug in a running Cloud Hypervisor VM', () => {
  it('gc removes the NIC with vm.remove-device, then the host side; another error than 404 keeps it all', async () => {
    const { pod, api, flag, nicId, expectRemovals, detach } = await halfPlugged('ch');

    // The VMM refuses the removal (not 404: the NIC may be in the VM): nothing of the endpoint goes.
    api.replies.push({ status: 500, reason: 'Internal Server Error', body: '"Error removing device"' });
    const kept = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    expect(kept.status, kept.stderr).toBe(1);
    const keptReport = JSON.parse(kept.stdout) as { removed: unknown[]; failures: Array<{ reason: string }> };
    expect(keptReport.removed).toEqual([]);
    expect(keptReport.failures.map((failure) => failure.reason).join('\n')).toMatch(
      new RegExp(
        `unfinished attach of eth9 \\(sandbox ch\\): ${nicId} may still be in the VM, so its record and plumbing stay`,
      ),
    );
    expectRemovals(1, 'kept');

    // The VMM removes it (204): the host side goes, and the record keeps only eth0.
    const collected = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    expect(collected.status, collected.stderr).toBe(0);
    expect(JSON.parse(collected.stdout).removed).toEqual([
      expect.objectContaining({ detail: expect.stringMatching(/^unfinished attach of eth9: tun tap1_kata/) }),
    ]);
    expectRemovals(2, 'undone');
    await detach();
  }, 120_000);

  it('gc takes 404 from vm.remove-device as done: the NIC never reached the VM', async () => {
    const { pod, api, flag, nicId, expectRemovals, detach } = await halfPlugged('cn');
    api.heldIds.delete(nicId); // as if the kill had come before the VMM took it
    const collected = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    expect(collected.status, collected.stderr).toBe(0);
    expectRemovals(1, 'undone');
    await detach();
  }, 120_000);

  it('a watch that starts removes the NIC with vm.remove-device before the host side; another error than 404 keeps it', async () => {
    const { api, flag, nicId, expectRemovals, detach } = await halfPlugged('cw');
    // A long debounce: what the watch does at start is seen before it attaches eth9 again.
    const options = { stateDirectory: flag[1]!, debounceMs: 60_000, onError: () => {} };

    api.replies.push({ status: 500, reason: 'Internal Server Error', body: '"Error removing device"' });
    const refused = await watchSandbox('cw', options);
    await refused.stop();
    expect(refused.undoneAttaches).toEqual([]);
    expect(refused.notUndone).toEqual([
      {
        name: 'eth9',
        message: expect.stringContaining(`${nicId} may still be in the VM, so its record and plumbing stay`),
      },
    ]);
    expectRemovals(1, 'kept');

    const watching = await watchSandbox('cw', options);
    await watching.stop();
    expect(watching.undoneAttaches).toEqual(['eth9']);
    expect(watching.notUndone).toEqual([]);
    expectRemovals(2, 'undone');
    await detach();
  }, 120_000);
});

describe('an unfinished hot-plug in a Cloud Hypervisor VM that answers no request (slow or hung)', () => {
  it('gc waits for vmm.ping without the locks: list-ifaces answers meanwhile; once the VMM answers, gc removes the NIC as before', async () => {
    const { pod, flag, expectRemovals, detach, pings, hangVmm } = await halfPlugged('cg');
    const vmm = hangVmm();
    const collecting = vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json'], { VCNET_QMP_CONNECT_TIMEOUT: '60' });
    stops.push(async () => {
      collecting.child.kill('SIGKILL');
      await collecting.done;
    });
    await vmm.reached("gc's first request");
    await expectListIfacesAnswers('cg', flag);
    expect(collecting.child.exitCode, 'gc still waiting for the VMM').toBeNull();
    expect(pings()).toBe(1);
    expectRemovals(0, 'kept');

    vmm.release();
    const collected = await collecting.done;
    expect(collected.status, collected.stderr).toBe(0);
    expect(JSON.parse(collected.stdout).removed).toEqual([
      expect.objectContaining({ detail: expect.stringMatching(/^unfinished attach of eth9: tun tap1_kata/) }),
    ]);
    // The ping without the locks, then one under them before the removal.
    expect(pings()).toBe(2);
    expectRemovals(1, 'undone');
    await detach();
  }, 120_000);

  it('gc leaves the record as it is, said in skipped, when the VMM answers no vmm.ping by the end of its wait (3 s)', async () => {
    const { pod, api, flag, expectRemovals, detach, pings, hangVmm } = await halfPlugged('cs');
    const vmm = hangVmm();
    const collected = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    const reason = expectUnfinishedLeftForNextGc(collected, stateDirectory(), 'cs');
    // The whole wait without the locks, then one try under them: the time said is all of it (it said
    // "within 3000 ms in all, at most 1000 ms of it under the sandbox's lock").
    const said = reason.match(
      new RegExp(
        `Cloud Hypervisor API socket ${api.socketPath} did not answer gc's vmm.ping within (\\d+) ms in all, (\\d+) ms of it under the sandbox's lock \\(at most 1000 ms\\), the rest without it`,
      ),
    );
    expect(said, reason).not.toBeNull();
    const [inAllMs, underLockMs] = [Number(said?.[1]), Number(said?.[2])];
    expect(underLockMs).toBeGreaterThanOrEqual(999); // the ping's own bound under the lock, ran out
    expect(inAllMs).toBeGreaterThanOrEqual(2_999 + underLockMs); // and the 3 s wait without the locks before it
    expect(reason).toContain('Cloud Hypervisor answers one request at a time, so the VMM is slow or hung on another');
    expect(reason).toContain('nothing was changed: run gc again');
    // One ping without the locks, one under them; no removal was sent.
    expect(pings()).toBe(2);
    expectRemovals(0, 'kept');

    vmm.release();
    await detach();
  }, 120_000);

  it('gc on a VMM that answers vmm.ping without the locks but never under them: its reason counts every try under the lock, and all the time', async () => {
    const { pod, api, flag, expectRemovals, detach, pings } = await halfPlugged('ca');
    // Free whenever gc waits without the locks (those pings answer), busy on another request whenever
    // it holds them (those hang): the pings alternate, without the locks first, under them last.
    const pingPath = '/api/v1/vmm.ping';
    const answer = JSON.stringify({ version: '53.0.0' });
    for (let pair = 0; pair < 20; pair++) {
      api.replies.push({ status: 200, reason: 'OK', body: answer, path: pingPath });
      api.replies.push({ status: 0, reason: '', answer: 'hang', path: pingPath });
    }
    const collected = await vcnetAsync(['gc', '--netns', pod.path, ...flag, '--json']).done;
    const reason = expectUnfinishedLeftForNextGc(collected, stateDirectory(), 'ca');
    expect(pings() % 2, `pings alternate and end under the lock: ${reason}`).toBe(0);
    const triesUnderLock = pings() / 2;
    expect(triesUnderLock, reason).toBeGreaterThan(1);
    const said = reason.match(
      new RegExp(
        `did not answer gc's vmm.ping under the sandbox's lock within (\\d+) ms in all, (\\d+) ms of it in ${triesUnderLock} tries under the sandbox's lock \\(at most 1000 ms each, vmm.ping answered in between without it\\)`,
      ),
      // It said "within 3000 ms in all, at most 1000 ms of it under the sandbox's lock".
    );
    expect(said, reason).not.toBeNull();
    const [inAllMs, underLockMs] = [Number(said?.[1]), Number(said?.[2])];
    expect(underLockMs).toBeGreaterThanOrEqual(999 * triesUnderLock); // each try ran out its bound
    expect(inAllMs).toBeGreaterThanOrEqual(underLockMs);
    expect(reason).not.toContain("at most 1000 ms of it under the sandbox's lock");
    expect(reason).toContain('nothing was changed: run gc again');
    expectRemovals(0, 'kept');
    api.replies.splice(0); // what gc did not take: detach's requests get the API's own answers
    await detach();
  }, 120_000);

  it('a watch that starts waits for vmm.ping without the lock, then starts leaving the endpoint as it is, saying so', async () => {
    const { api, flag, expectRemovals, detach, pings, hangVmm } = await halfPlugged('cx');
    const previousWait = process.env.VCNET_QMP_CONNECT_TIMEOUT;
    process.env.VCNET_QMP_CONNECT_TIMEOUT = '8';
    stops.push(() => {
      if (previousWait === undefined) delete process.env.VCNET_QMP_CONNECT_TIMEOUT;
      else process.env.VCNET_QMP_CONNECT_TIMEOUT = previousWait;
    });
    const vmm = hangVmm();
    const starting = watchSandbox('cx', { stateDirectory: flag[1]!, debounceMs: 60_000, onError: () => {} });
    await vmm.reached("watch's first request");
    await expectListIfacesAnswers('cx', flag);

    const watching = await starting;
    await watching.stop();
    expect(watching.undoneAttaches).toEqual([]);
    expect(watching.notUndone).toEqual([
      {
        name: 'eth9',
        message: expect.stringContaining(
          `Cloud Hypervisor API socket ${api.socketPath} did not answer watch's vmm.ping within `,
        ),
      },
    ]);
    expect(watching.notUndone[0]?.message).toContain('nothing of it was changed');
    const inAllMs = Number(watching.notUndone[0]?.message.match(/vmm\.ping within (\d+) ms in all/)?.[1]);
    expect(inAllMs, 'the 8 s wait without the lock, then a try under it').toBeGreaterThanOrEqual(8_999);
    expect(pings()).toBe(2);
    expectRemovals(0, 'kept');

    vmm.release();
    await detach();
  }, 120_000);
});
