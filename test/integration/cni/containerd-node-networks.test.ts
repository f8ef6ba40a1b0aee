/**
 * vcnet-cni under containerd 1.6 (`ctr run --cni`) on networks a real node has and the basic
 * bridge conflist of container-runtimes.test.ts lacks: an IPv6-only network, the `bandwidth` plugin
 * chained before vcnet-cni (its ifb and tbf on the node, beside vcnet's own rate limit in the pod),
 * and a single-plugin `.conf` file (libcni makes it a list of one: vcnet-cni without prevResult).
 * Each case ends its container and checks that nothing is left: host-local reservations, vcnet
 * records, bridge ports, the bandwidth plugin's ifb.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CgroupMountNamespace } from '../../helpers/cgroups.js';
import { recordedGuestNetwork } from '../../helpers/cni.js';
import {
  type ClientFixture,
  Containerd,
  endRuntimeSuite,
  missingCommands,
  namespaceJson,
  type ProcessOutcome,
  planRuntimeSuite,
  redirectOf,
  startRuntimeSuite,
  waitFor,
} from '../../helpers/container-runtimes.js';

const suite = planRuntimeSuite(['bridge', 'host-local', 'bandwidth']);
const skipReason =
  suite.skip ?? missingCommands(['containerd', 'ctr', 'containerd-shim-runc-v2', 'runc', 'nsenter', 'unshare']);
if (skipReason) console.log(`skipping the containerd node network tests: ${skipReason}`);

interface Started {
  id: string;
  namespacePath: string;
  stop: () => Promise<ProcessOutcome>;
}

interface GlobalAddress {
  family: string;
  local: string;
  scope: string;
}

function globalAddresses(namespacePath: string, device: string): GlobalAddress[] {
  return namespaceJson<Array<{ addr_info: GlobalAddress[] }>>(
    namespacePath,
    'ip',
    'addr',
    'show',
    'dev',
    device,
  )[0]!.addr_info.filter((info) => info.scope === 'global');
}

describe.skipIf(skipReason)('containerd 1.6 (ctr run --cni) on the networks of a real node', () => {
  let directory: string;
  let fixture: ClientFixture;
  let cgroups: CgroupMountNamespace | undefined;
  let containerd: Containerd;

  beforeAll(async () => {
    ({ directory, fixture, cgroups } = await startRuntimeSuite(suite.cgroupPlan, {
      directoryPrefix: 'vcnet-containerd-networks-',
      nodePrefix: 'ctrnet',
      bridge: 'vcctrn0',
      subnet: '10.231.50.0/24',
    }));
    containerd = new Containerd(directory, fixture, cgroups);
    await containerd.start();
  });

  // A case that failed half-way leaves its container: its task killed here (`ctr run --rm` then
  // deletes it and runs DEL), so the next case starts clean.
  afterEach(async () => {
    const containers = () => containerd.ctr(['containers', 'list', '--quiet']).stdout.split('\n').filter(Boolean);
    for (const id of containers()) containerd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', id]);
    await waitFor('the containers of the case to be deleted', () => containers().length === 0, 30_000);
  });

  afterAll(async () => {
    await containerd?.stop();
    await endRuntimeSuite(directory, cgroups);
  });

  /** One container on the directory's network, once vcnet-cni's ADD has recorded it. */
  async function startContainer(): Promise<Started> {
    const id = `c${randomBytes(4).toString('hex')}`;
    const { done } = containerd.run(id);
    let exited: unknown;
    void done.then((outcome) => {
      exited = outcome;
    });
    const pid = await waitFor(
      `container ${id}`,
      () => {
        if (exited) throw new Error(`ctr run ${id} exited: ${JSON.stringify(exited)}`);
        const taskPid = containerd.taskPid(id);
        return taskPid && fixture.attached(`default-${id}`) ? taskPid : undefined;
      },
      240_000,
    );
    return {
      id,
      namespacePath: `/proc/${pid}/ns/net`,
      stop: async () => {
        containerd.ctr(['tasks', 'kill', '--signal', 'SIGKILL', id]);
        return done;
      },
    };
  }

  async function expectFreed(network: string): Promise<void> {
    expect(fixture.reservations(network)).toEqual([]);
    expect(fixture.recordedContainers()).toEqual([]);
    await waitFor('the bridge to lose its ports', () => fixture.bridgePorts().length === 0, 30_000);
    expect(containerd.ctr(['containers', 'list', '--quiet']).stdout.trim()).toBe('');
  }

  it('an IPv6-only network: the tap and redirects, the guest gets the IPv6 address and default route; freed after', async () => {
    const network = 'vcnet-ctr-v6only';
    const subnet = 'fd00:231:50::/64';
    fixture.writeConflist(network, { subnets: [subnet] });
    // A route for the guest, as an IPv6-only cluster's IPAM gives one.
    const conflistPath = join(fixture.confDirectory, `10-${network}.conflist`);
    const conflist = JSON.parse(readFileSync(conflistPath, 'utf8')) as {
      plugins: Array<{ ipam?: Record<string, unknown> }>;
    };
    conflist.plugins[0]!.ipam!.routes = [{ dst: '::/0' }];
    fixture.writeConfigFile(`10-${network}.conflist`, conflist);

    const container = await startContainer();
    expect(redirectOf(container.namespacePath, 'eth0')).toBe('tap0_kata');
    expect(redirectOf(container.namespacePath, 'tap0_kata')).toBe('eth0');
    const addresses = globalAddresses(container.namespacePath, 'eth0');
    expect(addresses.map((entry) => entry.family)).toEqual(['inet6']);
    const guest = recordedGuestNetwork(
      fixture.stateDirectory,
      `default-${container.id}`,
      'eth0',
      container.namespacePath,
    );
    expect(guest.interfaces.flatMap((entry) => entry.IPAddresses).map((entry) => entry.address)).toContain(
      addresses[0]!.local,
    );
    expect(guest.routes.filter((route) => route.dest === '::/0')).toHaveLength(1);
    expect(guest.routes.filter((route) => route.dest === '0.0.0.0/0')).toEqual([]);
    expect(fixture.reservations(network)).toHaveLength(1);

    const outcome = await container.stop();
    // vcnet-cni writes its notices (a guest without an address, say) on the stderr ctr passes on: none here.
    expect(outcome.stderr).not.toContain('vcnet-cni');
    await expectFreed(network);
  });

  it('bandwidth before vcnet-cni, and vcnet-cni rateLimit: both shapers in place, and DEL of the chain leaves neither', async () => {
    const network = 'vcnet-ctr-bandwidth';
    fixture.writeConflist(network, {
      between: [
        { type: 'bandwidth', ingressRate: 8_000_000, ingressBurst: 80_000, egressRate: 8_000_000, egressBurst: 80_000 },
      ],
      vcnet: { rateLimit: { rx: 20_000_000, tx: 10_000_000 } },
    });
    const ifbsOnNode = () =>
      fixture.node
        .ipJson<Array<{ ifname: string; linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show')
        .filter((link) => link.linkinfo?.info_kind === 'ifb')
        .map((link) => link.ifname);
    expect(ifbsOnNode()).toEqual([]);

    const container = await startContainer();
    expect(redirectOf(container.namespacePath, 'eth0')).toBe('tap0_kata');
    expect(redirectOf(container.namespacePath, 'tap0_kata')).toBe('eth0');
    // bandwidth's egress shaper: an ifb on the node fed from the host end of the veth.
    expect(ifbsOnNode()).toEqual([expect.stringMatching(/^bwp/)]);
    const [hostEnd] = fixture.bridgePorts();
    expect(fixture.node.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', hostEnd!).map((q) => q.kind)).toContain(
      'tbf',
    );
    // vcnet-cni's in the pod (tcfilter): htb on the tap (rx) and on eth0 (tx).
    for (const device of ['tap0_kata', 'eth0']) {
      const kinds = namespaceJson<Array<{ kind: string }>>(
        container.namespacePath,
        'tc',
        'qdisc',
        'show',
        'dev',
        device,
      );
      expect(
        kinds.map((qdisc) => qdisc.kind),
        device,
      ).toContain('htb');
    }

    const outcome = await container.stop();
    expect(outcome.stderr).not.toContain('vcnet-cni');
    await expectFreed(network);
    expect(ifbsOnNode()).toEqual([]);
  });

  it('a .conf file of vcnet-cni alone (no interface plugin before it): ctr run fails with the reason, nothing left', async () => {
    const network = 'vcnet-ctr-conf';
    fixture.writeConfigFile('10-vcnet.conf', {
      cniVersion: '0.3.1',
      name: network,
      type: 'vcnet-cni',
      stateDir: fixture.stateDirectory,
    });
    const id = `c${randomBytes(4).toString('hex')}`;
    const outcome = await containerd.run(id).done;
    expect(outcome.status).not.toBe(0);
    // libcni names the network of a .conf in its error, between the type and "failed".
    expect(outcome.stderr).toContain(`plugin type="vcnet-cni" name="${network}" failed (add)`);
    expect(outcome.stderr).toContain('invalid network config: prevResult: missing: vcnet-cni is a chained plugin');
    expect(outcome.stderr).toContain('list vcnet-cni after an interface plugin');
    expect(fixture.recordedContainers()).toEqual([]);
    containerd.ctr(['tasks', 'delete', '--force', id]);
    containerd.ctr(['containers', 'delete', id]);
    await expectFreed(network);
  });
});
