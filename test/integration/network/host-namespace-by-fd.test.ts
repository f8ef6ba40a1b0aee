/**
 * Never the host namespace, decided on the namespace vcnet actually works in, not on a path. attach
 * opens `--netns PATH` once and works through that fd; a symbolic link a user controls can name the
 * host's namespace when it is opened and the pod's when it is looked at again, and the check used to
 * look at the path: root then plumbed its own namespace (a tap, and a redirect of everything arriving
 * on the host's interface to it) under a record detach refuses. Here the race is set up
 * deterministically: the fd is the host's, the path names a pod.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Network, type NetworkState } from '../../../src/network/network.js';
import { NETWORK_STATE_VERSION } from '../../../src/network/state/content-versions.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../../helpers/pod.js';

afterEach(() => {
  cleanupNamespaces();
});

function withFd<T>(path: string, work: (entryPath: string) => T): T {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    return work(`/proc/self/fd/${fd}`);
  } finally {
    closeSync(fd);
  }
}

function thrown(work: () => unknown): { code?: string; message?: string } | undefined {
  try {
    const network = work() as Network;
    network.close();
    return undefined;
  } catch (error) {
    return error as { code?: string; message?: string };
  }
}

describe('the host-namespace check looks at the namespace entered, not the path', () => {
  it("Network.open with the host's fd behind a pod's path: refused, naming the path", () => {
    const { pod } = makePod();
    const error = withFd('/proc/self/ns/net', (entryPath) =>
      thrown(() => Network.open(tcfilterConfig(pod), 's1', entryPath)),
    );
    expect(error?.code).toBe('VCNET_HOST_NAMESPACE');
    expect(error?.message).toContain(pod.path);
  });

  it("Network.load (detach, add-iface, gc) with the host's fd behind a pod's path: refused", () => {
    const { pod } = makePod();
    const state: NetworkState = { version: NETWORK_STATE_VERSION, config: tcfilterConfig(pod), endpoints: [] };
    const error = withFd('/proc/self/ns/net', (entryPath) => thrown(() => Network.load(state, 's1', entryPath)));
    expect(error?.code).toBe('VCNET_HOST_NAMESPACE');
  });

  it("the pod's own fd is accepted, and disable_new_netns still shares the host's namespace", () => {
    const { pod } = makePod();
    expect(withFd(pod.path, (entryPath) => thrown(() => Network.open(tcfilterConfig(pod), 's1', entryPath)))).toBe(
      undefined,
    );
    const shared = tcfilterConfig(pod, { namespacePath: '/proc/self/ns/net', model: 'none', disableNewNetns: true });
    expect(withFd('/proc/self/ns/net', (entryPath) => thrown(() => Network.open(shared, 's1', entryPath)))).toBe(
      undefined,
    );
  });
});
