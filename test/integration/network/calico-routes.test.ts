/**
 * A Calico-style pod (an address alone in its /32 or /128, the gateway reached only through a
 * link-scope route to it) attached with macvtap, which takes the pod link's routes away with its
 * addresses: detach, and the rollback of an attach that fails at its last step, put every route back,
 * and the namespace is as it was (`ip -d addr/route/neigh`). The kernel refuses a route whose gateway
 * no gateway-less route reaches yet (IPv4 "Nexthop has invalid gateway", IPv6 EHOSTUNREACH), so the
 * routes to the gateways must come back before the routes through them, whatever order the kernel
 * lists them in. The kernel refuses a gateway reached only through another gateway (multi-hop) at
 * once, in both families: one level is all a pod can have. With tcfilter, the guest is told every
 * route; the agents add the routes without a gateway first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NetworkConfig } from '../../../src/network/config.js';
import { generateGuestNetwork } from '../../../src/network/guest.js';
import type { InterworkingModel } from '../../../src/network/interworking-model.js';
import { Network } from '../../../src/network/network.js';
import { setApplyTestHook } from '../../../src/network/plan/apply.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, podConfig } from '../../helpers/pod.js';

let stateDir: string;
const networks: Network[] = [];

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-calico-'));
});

afterEach(() => {
  setApplyTestHook(undefined);
  for (const network of networks.splice(0)) network.close();
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

/**
 * The pod as Calico's CNI plugin leaves it, plus gateways whose routes the kernel lists before the
 * routes through them (172.16.9.1 before 172.20.0.0/16, fd00:99::1 before fd00:aa::/64) and after
 * (192.168.77.1 after 10.250.0.0/16, fd00:ff::1 after fd00:1::/64).
 */
function calicoPod(): TestNamespace {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  node.exec('ip', ['link', 'add', 'cali0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
  node.exec('ip', ['link', 'set', 'cali0', 'address', 'ee:ee:ee:ee:ee:ee', 'up']);
  pod.exec('ip', ['link', 'set', 'eth0', 'up']);
  pod.exec('ip', ['addr', 'add', '10.77.1.2/32', 'dev', 'eth0']);
  pod.exec('ip', ['addr', 'add', 'fd00:77::2/128', 'dev', 'eth0', 'nodad']);
  const routes = [
    ['169.254.1.1', 'dev', 'eth0', 'scope', 'link'],
    ['default', 'via', '169.254.1.1', 'dev', 'eth0'],
    ['172.16.9.1', 'dev', 'eth0', 'scope', 'link'],
    ['172.20.0.0/16', 'via', '172.16.9.1', 'dev', 'eth0'],
    ['192.168.77.1', 'dev', 'eth0', 'scope', 'link'],
    ['10.250.0.0/16', 'via', '192.168.77.1', 'dev', 'eth0'],
    ['-6', 'default', 'via', 'fe80::ecee:eeff:feee:eeee', 'dev', 'eth0'],
    ['-6', 'fd00:99::1', 'dev', 'eth0'],
    ['-6', 'fd00:aa::/64', 'via', 'fd00:99::1', 'dev', 'eth0'],
    ['-6', 'fd00:ff::1', 'dev', 'eth0'],
    ['-6', 'fd00:1::/64', 'via', 'fd00:ff::1', 'dev', 'eth0'],
  ];
  for (const route of routes) {
    const family = route[0] === '-6' ? ['-6'] : [];
    pod.exec('ip', [...family, 'route', 'add', ...route.slice(family.length)]);
  }
  pod.exec('ip', ['neigh', 'add', '169.254.1.1', 'lladdr', 'ee:ee:ee:ee:ee:ee', 'dev', 'eth0', 'nud', 'permanent']);
  return pod;
}

/** The fingerprint plus `ip -d` of addresses, routes and neighbours, compared exactly. */
function state(pod: TestNamespace): Record<string, unknown> {
  const lines = (args: string[]) =>
    pod
      .exec('ip', args)
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.includes('valid_lft'));
  return {
    ...fingerprint(pod),
    addr: lines(['-d', 'addr', 'show']),
    route4: lines(['-d', 'route', 'show', 'table', 'all']),
    route6: lines(['-d', '-6', 'route', 'show', 'table', 'all']),
    neigh: lines(['-d', 'neigh', 'show', 'nud', 'permanent']),
  };
}

const config = (pod: TestNamespace, model: InterworkingModel): NetworkConfig => podConfig(pod, model);

describe('a Calico-style pod', () => {
  it('the kernel refuses a gateway reached only through another gateway (so one level is all there is)', () => {
    const pod = calicoPod();
    expect(() => pod.exec('ip', ['route', 'add', '172.30.0.0/16', 'via', '172.20.0.2', 'dev', 'eth0'])).toThrow();
    expect(() => pod.exec('ip', ['-6', 'route', 'add', 'fd00:bb::/64', 'via', 'fd00:aa::1', 'dev', 'eth0'])).toThrow();
  });

  it('macvtap: detach puts every route back, the namespace is as it was', async () => {
    const pod = calicoPod();
    const before = state(pod);
    await attachSandbox('calico', config(pod, 'macvtap'), { stateDirectory: stateDir });
    // The routes went with the addresses.
    expect(pod.exec('ip', ['route', 'show', 'dev', 'eth0'])).not.toContain('172.20.0.0/16');
    const detached = await detachSandbox('calico', { stateDirectory: stateDir });
    expect(detached.report?.failures ?? []).toEqual([]);
    expect(detached.report?.left ?? []).toEqual([]);
    expect(readSandbox('calico', stateDir)).toBeUndefined();
    expect(state(pod)).toEqual(before);
  });

  it('macvtap: an attach failing at its last step is rolled back whole', async () => {
    const pod = calicoPod();
    const before = state(pod);
    setApplyTestHook((step) => {
      if (step.change.op === 'set-link' && step.change.link.role === 'macvtap' && step.change.set.up === true) {
        throw new Error('injected fault at the last step');
      }
    });
    const error = (await attachSandbox('calico', config(pod, 'macvtap'), { stateDirectory: stateDir }).then(
      () => new Error('attach succeeded'),
      (caught: unknown) => caught,
    )) as Error & { code?: string };
    setApplyTestHook(undefined);
    expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).toContain('everything it had made was removed');
    expect(readSandbox('calico', stateDir)).toBeUndefined();
    expect(state(pod)).toEqual(before);
  });

  it('tcfilter: the guest is told every route, and detach leaves the pod as it was', async () => {
    const pod = calicoPod();
    const before = state(pod);
    const network = Network.open(config(pod, 'tcfilter'));
    networks.push(network);
    await network.addEndpoints();
    // In the kernel's order, as Kata sends them (the default before 169.254.1.1): Kata's agent and
    // vcnet's add the routes without a gateway first (test/integration/agent/netlink-applier.test.ts).
    const routes = generateGuestNetwork(network.endpoints()).routes.map(
      (route) => `${route.dest}${route.gateway ? ` via ${route.gateway}` : ''} scope ${route.scope}`,
    );
    expect(routes).toEqual([
      '0.0.0.0/0 via 169.254.1.1 scope 0',
      '10.250.0.0/16 via 192.168.77.1 scope 0',
      '169.254.1.1/32 scope 253',
      '172.16.9.1/32 scope 253',
      '172.20.0.0/16 via 172.16.9.1 scope 0',
      '192.168.77.1/32 scope 253',
      'fd00:1::/64 via fd00:ff::1 scope 0',
      'fd00:99::1/128 scope 0',
      'fd00:aa::/64 via fd00:99::1 scope 0',
      'fd00:ff::1/128 scope 0',
      '::/0 via fe80::ecee:eeff:feee:eeee scope 0',
    ]);
    expect((await network.removeEndpoints()).failures).toEqual([]);
    expect(state(pod)).toEqual(before);
  });
});
