/**
 * A sandbox attached through `vcnet attach` to Cloud Hypervisor's API stand-in (FakeCloudHypervisor),
 * with vcnet's agent serving a namespace that plays the guest, and the checks the tests of a VMM that
 * answers no request share: the stand-in hung, and another command answering meanwhile.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { vcnetAsync } from './cli.js';
import { FakeCloudHypervisor } from './fake-cloud-hypervisor.js';
import { serveNamespaceAgent } from './namespace-agent.js';
import { fingerprint, makeConfiguredGuest, makePod } from './pod.js';
import { until } from './until.js';

/**
 * Attaches sandbox `sandbox` (the pod's eth0) in `stateDirectory` with `--hypervisor clh` on a new
 * stand-in. `stops` gets what the test's afterEach stops; `linkAppearTimeoutMs` is how long the
 * agent waits for a plugged NIC to show in the guest.
 */
export async function attachOnCloudHypervisorStandIn(
  sandbox: string,
  stateDirectory: string,
  stops: Array<() => unknown>,
  linkAppearTimeoutMs: number,
) {
  const { pod } = makePod();
  const before = fingerprint(pod);
  const api = await FakeCloudHypervisor.start();
  stops.push(() => api.stop());
  // add-iface reaches the agent before it plugs anything: one serves a namespace playing the guest.
  const guest = makeConfiguredGuest();
  const agentPath = join(stateDirectory, 'agent.sock');
  const agent = await serveNamespaceAgent(guest.path, agentPath, { linkAppearTimeoutMs });
  stops.push(() => agent.stop());
  const flag = ['--state-dir', stateDirectory];
  const attached = await vcnetAsync([
    ...['attach', '--sandbox', sandbox, '--netns', pod.path, ...flag],
    ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
  ]).done;
  expect(attached.status, attached.stderr).toBe(0);
  /** `before`: the pod as it was before the attach. */
  return { pod, before, guest, api, flag };
}

/**
 * The stand-in stuck on a request from now on (released by `stops` after the test, before it stops),
 * and a function that resolves once it got a request more than it had: the command under test reached it.
 */
export function hangStandIn(api: FakeCloudHypervisor, stops: Array<() => unknown>) {
  const release = api.hang();
  stops.push(release);
  const requestsBefore = api.requests.length;
  return {
    release,
    reached: (what: string) => until(() => api.requests.length > requestsBefore, what, 30_000),
  };
}

/** list-ifaces of `sandbox` answers, waiting at most 5 s for the sandbox's lock. */
export async function expectListIfacesAnswers(sandbox: string, flag: string[]): Promise<void> {
  const listed = await vcnetAsync(['list-ifaces', sandbox, '--json', ...flag], { VCNET_LOCK_TIMEOUT: '5' }).done;
  expect(listed.stderr).not.toContain('is being changed by process');
  expect(listed.status, listed.stderr).toBe(0);
  expect(listed.stdout).toContain('"eth0"');
}
