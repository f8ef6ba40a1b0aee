/**
 * vcnet-cni driven by real CNI clients, as a node runs it: containerd 1.6 (`ctr run --cni`) and
 * podman 4 with its CNI backend, each on bridge + host-local + the installed vcnet-cni launcher. Per
 * client: a container gets the tap and both redirects in its namespace; stopping it leaves no
 * host-local reservation, no vcnet state and no bridge port; 20 containers at once; a bad vcnet
 * option, or vcnet-cni killed (kill -9) in ADD, fails the start but leaks nothing (the client's own
 * DEL after the failed ADD); a 0.3.1 conflist works. Without cgroup filesystems at
 * /sys/fs/cgroup (CI's chroot), the runtimes run in a private mount namespace that has them.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CgroupMountNamespace } from '../../helpers/cgroups.js';
import { killAfter } from '../../helpers/cli.js';
import {
  type ClientFixture,
  Containerd,
  endRuntimeSuite,
  missingCommands,
  namespaceJson,
  Podman,
  planRuntimeSuite,
  redirectOf,
  startRuntimeSuite,
  waitFor,
} from '../../helpers/container-runtimes.js';

/** Why the runtimes cannot run here, and how they get cgroups (runc needs them) when /sys/fs/cgroup has none. */
const { skip: baseSkip, cgroupPlan } = planRuntimeSuite();
const containerdSkip =
  baseSkip ?? missingCommands(['containerd', 'ctr', 'containerd-shim-runc-v2', 'runc', 'nsenter', 'unshare']);
const podmanSkip = baseSkip ?? missingCommands(['podman', 'conmon', 'runc', 'nsenter']);
if (containerdSkip) console.log(`skipping the containerd (ctr --cni) tests: ${containerdSkip}`);
if (podmanSkip) console.log(`skipping the podman CNI backend tests: ${podmanSkip}`);
if (cgroupPlan.script && !(containerdSkip && podmanSkip)) {
  console.log('no cgroup filesystem at /sys/fs/cgroup: the runtimes run in a private mount namespace that has them');
}

const MANY = 20;

function linkNames(namespacePath: string): string[] {
  return namespaceJson<Array<{ ifname: string }>>(namespacePath, 'ip', 'link', 'show').map((link) => link.ifname);
}

/** What every client's container must have in its namespace after ADD. */
function expectAttached(namespacePath: string): void {
  expect(linkNames(namespacePath)).toEqual(expect.arrayContaining(['eth0', 'tap0_kata']));
  expect(redirectOf(namespacePath, 'eth0')).toBe('tap0_kata');
  expect(redirectOf(namespacePath, 'tap0_kata')).toBe('eth0');
}

/** A dual-stack network at MTU 9000: what its container's namespace must show after ADD. */
const JUMBO_DUAL_STACK = { mtu: 9000, ipv6Subnet: 'fd00:231:20::/64' };

/** eth0 and the tap carry the jumbo MTU, and eth0 has an address of each family (IPAM's), besides expectAttached. */
function expectJumboDualStack(namespacePath: string): void {
  const links = namespaceJson<Array<{ ifname: string; mtu: number }>>(namespacePath, 'ip', 'link', 'show');
  expect(links.filter((link) => link.ifname !== 'lo').map((link) => [link.ifname, link.mtu])).toEqual(
    expect.arrayContaining([
      ['eth0', JUMBO_DUAL_STACK.mtu],
      ['tap0_kata', JUMBO_DUAL_STACK.mtu],
    ]),
  );
  const addresses = namespaceJson<Array<{ addr_info: Array<{ family: string; scope: string }> }>>(
    namespacePath,
    'ip',
    'addr',
    'show',
    'dev',
    'eth0',
  )[0]!.addr_info.filter((info) => info.scope === 'global');
  expect(addresses.map((info) => info.family).sort()).toEqual(['inet', 'inet6']);
}

/** libcni's cache of the last ADD result (kept until DEL), written by the client. */
function cachedResult(network: string, containerId: string): Record<string, unknown> | undefined {
  const path = join('/var/lib/cni/results', `${network}-${containerId}-eth0`);
  if (!existsSync(path)) return undefined;
  const cached = JSON.parse(readFileSync(path, 'utf8')) as { result?: Record<string, unknown> };
  return cached.result;
}

describe.skipIf(containerdSkip)('containerd 1.6: ctr run --cni', () => {
  let directory: string;
  let fixture: ClientFixture;
  let cgroups: CgroupMountNamespace | undefined;
  let containerd: Containerd;

  beforeAll(async () => {
    ({ directory, fixture, cgroups } = await startRuntimeSuite(cgroupPlan, {
      directoryPrefix: 'vcnet-containerd-',
      nodePrefix: 'ctrnode',
      bridge: 'vcctr0',
      subnet: '10.231.20.0/24',
    }));
    containerd = new Containerd(directory, fixture, cgroups);
    await containerd.start();
  });

  afterAll(async () => {
    await containerd?.stop();
    await endRuntimeSuite(directory, cgroups);
  });

  /** Starts containers, waits for each ADD; returns each one's namespace path and how to stop it. */
  async function startContainers(network: string, count: number) {
    const ids = Array.from({ length: count }, () => `c${randomBytes(4).toString('hex')}`);
    const runs = ids.map((id) => ({ id, ...containerd.run(id) }));
    const started = await Promise.all(
      runs.map(async ({ id, done }) => {
        let exited: unknown;
        void done.then((outcome) => {
          exited = outcome;
        });
        const pid = await waitFor(
          `container ${id} on ${network}`,
          () => {
            if (exited) throw new Error(`ctr run ${id} exited: ${JSON.stringify(exited)}`);
            const taskPid = containerd.taskPid(id);
            return taskPid && fixture.attached(`default-${id}`) ? taskPid : undefined;
          },
          240_000,
        );
        return { id, namespacePath: `/proc/${pid}/ns/net` };
      }),
    );
    const stop = async () => {
      for (const { id } of runs) containerd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', id]);
      return Promise.all(runs.map(({ done }) => done));
    };
    return { started, stop };
  }

  async function expectFreed(network: string): Promise<void> {
    expect(fixture.reservations(network)).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    await waitFor('the bridge to lose its ports', () => fixture.bridgePorts().length === 0, 30_000);
    expect(containerd.ctr(['containers', 'list', '--quiet']).stdout.trim()).toBe('');
  }

  it('a container gets the tap and both redirects; when it ends, DEL frees address, state and bridge port', async () => {
    const network = 'vcnet-ctr';
    fixture.writeConflist(network);
    const { started, stop } = await startContainers(network, 1);
    const [container] = started;
    expectAttached(container!.namespacePath);
    expect(fixture.reservations(network)).toHaveLength(1);
    expect(fixture.bridgePorts()).toHaveLength(1);
    expect(cachedResult(network, `default-${container!.id}`)).toMatchObject({
      cniVersion: '1.0.0',
      interfaces: expect.arrayContaining([expect.objectContaining({ name: 'tap0_kata' })]),
    });

    const [outcome] = await stop();
    // ctr reports the task's exit (137) as its own; what matters is that DEL ran clean.
    expect(outcome!.stderr).not.toContain('vcnet-cni');
    await expectFreed(network);
  });

  it(`${MANY} containers at once each get their own tap; all freed after`, async () => {
    const network = 'vcnet-ctr-many';
    fixture.writeConflist(network);
    const { started, stop } = await startContainers(network, MANY);
    for (const container of started) expectAttached(container.namespacePath);
    expect(new Set(fixture.reservations(network)).size).toBe(MANY);
    expect(fixture.bridgePorts()).toHaveLength(MANY);
    await stop();
    await expectFreed(network);
  }, 300_000);

  it("a bad vcnet option: ctr run fails with vcnet-cni's message, and no address leaks", async () => {
    const network = 'vcnet-ctr-bad';
    fixture.writeConflist(network, { vcnet: { model: 'fast' } });
    const id = `c${randomBytes(4).toString('hex')}`;
    const outcome = await containerd.run(id).done;
    expect(outcome.status).not.toBe(0);
    expect(outcome.stderr).toContain('plugin type="vcnet-cni" failed (add): invalid network config: model');
    // ctr's deferred network Remove ran DEL through the whole chain: vcnet-cni did not stop it.
    expect(fixture.reservations(network)).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    // ctr leaves a failed container behind; its namespace (and the veth in it) goes with it.
    containerd.ctr(['tasks', 'delete', '--force', id]);
    containerd.ctr(['containers', 'delete', id]);
    await expectFreed(network);
  });

  it('vcnet-cni killed (kill -9) in ADD, as the attach starts and as it ends: ctr run fails, its DEL leaks nothing', async () => {
    const network = 'vcnet-ctr-kill';
    fixture.writeConflist(network);
    const kills = {
      // Delay 0: the lock file and directory made, the attach's first links and journal entries under way.
      'as the attach starts': killAfter('attach', 0, { cniCommand: 'ADD' }),
      // Everything made and journaled, the record without its device yet, no result printed.
      'as the attach ends': killAfter('attach', undefined, { atEnd: true, cniCommand: 'ADD' }),
    };
    for (const [point, environment] of Object.entries(kills)) {
      const id = `c${randomBytes(4).toString('hex')}`;
      const outcome = await containerd.run(id, environment).done;
      expect(outcome.status, point).not.toBe(0);
      expect(outcome.stderr, point).toContain('plugin type="vcnet-cni" failed (add)');
      expect(outcome.stderr, point).toContain('signal: killed');
      // ctr's deferred network Remove ran DEL through the whole chain (vcnet-cni's not killed).
      expect(fixture.reservations(network), point).toEqual([]);
      expect(fixture.recordedContainers(), point).toEqual([]);
      containerd.ctr(['tasks', 'delete', '--force', id]);
      containerd.ctr(['containers', 'delete', id]);
      await expectFreed(network);
    }
  });

  it('a dual-stack network at MTU 9000: eth0 and the tap carry 9000, both families cached; freed after', async () => {
    const network = 'vcnet-ctr-dual';
    fixture.writeConflist(network, {
      subnets: [fixture.subnet, JUMBO_DUAL_STACK.ipv6Subnet],
      mtu: JUMBO_DUAL_STACK.mtu,
    });
    const { started, stop } = await startContainers(network, 1);
    const [container] = started;
    expectAttached(container!.namespacePath);
    expectJumboDualStack(container!.namespacePath);
    const cached = cachedResult(network, `default-${container!.id}`) as { ips?: Array<{ address: string }> };
    expect(cached.ips?.map((entry) => entry.address.includes(':')).sort()).toEqual([false, true]);
    expect(fixture.reservations(network)).toHaveLength(2);
    await stop();
    await expectFreed(network);
  });

  it('a 0.3.1 conflist: attached, the cached result in 0.3.1, freed after', async () => {
    const network = 'vcnet-ctr-031';
    fixture.writeConflist(network, { cniVersion: '0.3.1' });
    const { started, stop } = await startContainers(network, 1);
    const [container] = started;
    expectAttached(container!.namespacePath);
    const cached = cachedResult(network, `default-${container!.id}`);
    expect(cached?.cniVersion).toBe('0.3.1');
    expect(cached?.ips).toEqual([expect.objectContaining({ version: '4' })]);
    expect(cached?.interfaces).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'tap0_kata' })]));
    await stop();
    await expectFreed(network);
  });
});

describe.skipIf(podmanSkip)('podman 4: CNI backend', () => {
  let directory: string;
  let fixture: ClientFixture;
  let cgroups: CgroupMountNamespace | undefined;
  let podman: Podman;

  beforeAll(async () => {
    ({ directory, fixture, cgroups } = await startRuntimeSuite(cgroupPlan, {
      directoryPrefix: 'vcnet-podman-',
      nodePrefix: 'podnode',
      bridge: 'vcpod0',
      subnet: '10.231.21.0/24',
    }));
    podman = new Podman(directory, fixture, cgroups);
  });

  afterAll(async () => {
    podman?.removeAll();
    await endRuntimeSuite(directory, cgroups);
  });

  /**
   * The container's namespace through its process: podman's own mount of it (SandboxKey) may be in
   * the cgroup mount namespace, out of this process's sight.
   */
  function namespaceOf(name: string): string {
    const inspected = podman.podman(['inspect', '--format', '{{.State.Pid}}', name]);
    expect(inspected.status, inspected.stderr).toBe(0);
    return `/proc/${inspected.stdout.trim()}/ns/net`;
  }

  async function expectFreed(network: string): Promise<void> {
    expect(fixture.reservations(network)).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    await waitFor('the bridge to lose its ports', () => fixture.bridgePorts().length === 0, 30_000);
  }

  it('a container gets the tap and both redirects; podman rm frees address, state and bridge port', () => {
    const network = 'vcnet-podman';
    fixture.writeConflist(network);
    const run = podman.podman(podman.runArgs('one', network));
    expect(run.status, run.stderr).toBe(0);
    const namespacePath = namespaceOf('one');
    expectAttached(namespacePath);
    expect(fixture.reservations(network)).toHaveLength(1);
    expect(fixture.bridgePorts()).toHaveLength(1);

    const removed = podman.podman(['rm', '--force', '--time', '0', 'one']);
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).not.toContain('vcnet-cni');
    return expectFreed(network);
  });

  it(`${MANY} containers at once each get their own tap; all freed after`, async () => {
    const network = 'vcnet-podman-many';
    fixture.writeConflist(network);
    const names = Array.from({ length: MANY }, (_, index) => `many${index}`);
    const runs = await Promise.all(names.map((name) => podman.podmanAsync(podman.runArgs(name, network))));
    for (const run of runs) expect(run.status, run.stderr).toBe(0);
    for (const name of names) expectAttached(namespaceOf(name));
    expect(new Set(fixture.reservations(network)).size).toBe(MANY);
    const removed = await Promise.all(names.map((name) => podman.podmanAsync(['rm', '--force', '--time', '0', name])));
    for (const outcome of removed) expect(outcome.status, outcome.stderr).toBe(0);
    await expectFreed(network);
  }, 300_000);

  it("a bad vcnet option: podman run fails with vcnet-cni's message, and no address leaks", async () => {
    const network = 'vcnet-podman-bad';
    fixture.writeConflist(network, { vcnet: { rateLimit: { burst: 1 } } });
    const run = podman.podman(podman.runArgs('bad', network));
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('plugin type="vcnet-cni" failed (add)');
    expect(run.stderr).toContain('unsupported field in network config: rateLimit.burst = 1');
    // podman tears the network down after a failed setup: DEL went through the whole chain.
    expect(fixture.reservations(network)).toEqual([]);
    podman.podman(['rm', '--force', 'bad']);
    await expectFreed(network);
  });

  it('vcnet-cni killed (kill -9) in ADD as the attach ends: podman run fails, its teardown leaks nothing', async () => {
    const network = 'vcnet-podman-kill';
    fixture.writeConflist(network);
    // Everything made and journaled, the record without its device yet, no result printed.
    const run = podman.podman(
      podman.runArgs('killed', network),
      killAfter('attach', undefined, { atEnd: true, cniCommand: 'ADD' }),
    );
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('plugin type="vcnet-cni" failed (add)');
    expect(run.stderr).toContain('signal: killed');
    // podman tears the network down after a failed setup: DEL went through the whole chain.
    expect(fixture.reservations(network)).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    podman.podman(['rm', '--force', 'killed']);
    await expectFreed(network);
  });

  it('a dual-stack network at MTU 9000: eth0 and the tap carry 9000; podman rm frees both addresses', () => {
    const network = 'vcnet-podman-dual';
    fixture.writeConflist(network, {
      subnets: [fixture.subnet, JUMBO_DUAL_STACK.ipv6Subnet.replace(':20::', ':21::')],
      mtu: JUMBO_DUAL_STACK.mtu,
    });
    const run = podman.podman(podman.runArgs('dual', network));
    expect(run.status, run.stderr).toBe(0);
    const namespacePath = namespaceOf('dual');
    expectAttached(namespacePath);
    expectJumboDualStack(namespacePath);
    expect(fixture.reservations(network)).toHaveLength(2);
    const removed = podman.podman(['rm', '--force', '--time', '0', 'dual']);
    expect(removed.status, removed.stderr).toBe(0);
    return expectFreed(network);
  });

  it('a 0.3.1 conflist: attached, freed after', () => {
    const network = 'vcnet-podman-031';
    fixture.writeConflist(network, { cniVersion: '0.3.1' });
    const run = podman.podman(podman.runArgs('old', network));
    expect(run.status, run.stderr).toBe(0);
    expectAttached(namespaceOf('old'));
    expect(fixture.reservations(network)).toHaveLength(1);
    const removed = podman.podman(['rm', '--force', '--time', '0', 'old']);
    expect(removed.status, removed.stderr).toBe(0);
    return expectFreed(network);
  });
});
