/**
 * vcnet-cni under what a real node's CNI makes and a one-pod test does not: many pods ADDed at once
 * (each chain run as a runtime runs it, bridge then vcnet-cni, all twenty in parallel) and DELed at
 * once; a dual-stack and an IPv6-only network; the MTUs of jumbo-frame and overlay networks (9000,
 * 1450 for VXLAN, 1280 the IPv6 minimum) set by the bridge plugin; and an old (0.4.0) conflist with
 * the plugins a cluster chains (tuning, portmap, bandwidth) before vcnet-cni; and portmap's port
 * mappings on an IPv6-only and a dual-stack network (its ip6tables DNAT in the node namespace).
 * Plugins are the real ones from /usr/lib/cni, run in a "node" namespace; after DEL, nothing of
 * vcnet's is left: links (`ip -d link`), qdiscs, filters, host-local leases, records.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type Attachment,
  CniChainError,
  CniRuntime,
  type Conflist,
  missingCniPlugins,
  type PluginRun,
  recordedGuestNetwork,
} from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint } from '../../helpers/pod.js';

const skipReason =
  process.getuid?.() !== 0
    ? 'vcnet-cni integration tests need root (namespaces, taps, tc)'
    : missingCniPlugins(['bridge', 'host-local', 'tuning', 'portmap', 'bandwidth']);
if (skipReason) console.log(`skipping vcnet-cni node condition tests: ${skipReason}`);

interface ChainResult extends Record<string, unknown> {
  cniVersion: string;
  interfaces: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips: Array<{ address: string; gateway?: string; interface?: number; version?: string }>;
}

interface TcFilter {
  options?: { actions?: Array<{ kind: string; to_dev?: string }> };
}

let workDirectory: string;
let stateDirectory: string;
let leaseDirectory: string;

beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-node-'));
  stateDirectory = join(workDirectory, 'state');
  leaseDirectory = join(workDirectory, 'ipam');
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** A pod namespace as a runtime makes it before ADD: only lo, and no DAD so fingerprints do not race. */
function emptyPod(): TestNamespace {
  const pod = makeNamespace('pod');
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  return pod;
}

function attachmentIn(pod: TestNamespace): Attachment {
  return { containerId: `ctr-${randomBytes(4).toString('hex')}`, namespacePath: pod.path, interfaceName: 'eth0' };
}

/** A bridge entry with host-local over `subnets` (one range set each), a default route per family, and `more` on top. */
function bridgeEntry(bridge: string, subnets: string[], more: Record<string, unknown> = {}) {
  return {
    type: 'bridge',
    bridge,
    isGateway: true,
    ipMasq: false,
    ...more,
    ipam: {
      type: 'host-local',
      ranges: subnets.map((subnet) => [{ subnet }]),
      routes: subnets.map((subnet) => ({ dst: subnet.includes(':') ? '::/0' : '0.0.0.0/0' })),
      dataDir: leaseDirectory,
    },
  };
}

/** The host-local files that are leases (named by address), not its lock and last_reserved_ip.N. */
function leases(network: string): string[] {
  const directory = join(leaseDirectory, network);
  if (!existsSync(directory)) return [];
  return readdirSync(directory).filter((name) => name !== 'lock' && !name.startsWith('last_reserved_ip'));
}

function records(): string[] {
  if (!existsSync(stateDirectory)) return [];
  return (readdirSync(stateDirectory, { recursive: true }) as string[]).filter((name) => name.endsWith('state.json'));
}

function redirectTarget(pod: TestNamespace, device: string): string | undefined {
  return pod
    .tcJson<TcFilter[]>('filter', 'show', 'dev', device, 'ingress')
    .flatMap((filter) => filter.options?.actions ?? [])
    .find((action) => action.kind === 'mirred')?.to_dev;
}

/** What vcnet-cni's ADD must have made in the pod: the tap, a redirect each way, the tap's MTU eth0's. */
function expectPlumbed(pod: TestNamespace): void {
  const [eth0] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'eth0');
  const [tap] = pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap0_kata');
  expect(tap?.mtu).toBe(eth0?.mtu);
  expect(redirectTarget(pod, 'eth0')).toBe('tap0_kata');
  expect(redirectTarget(pod, 'tap0_kata')).toBe('eth0');
}

/** One plugin's run, as CniRuntime's invokeConcurrently answers it, or the chain's error. */
function succeeded(run: PluginRun): Record<string, unknown> {
  if (run.status !== 0 || !run.output) throw new CniChainError(run);
  return run.output;
}

/** The whole list's ADD for one pod without blocking the event loop (so twenty run at once), plugin after plugin. */
async function addConcurrently(runtime: CniRuntime, list: Conflist): Promise<ChainResult> {
  let result: Record<string, unknown> | undefined;
  for (const plugin of list.plugins) {
    const config = {
      ...plugin,
      cniVersion: list.cniVersion,
      name: list.name,
      ...(result ? { prevResult: result } : {}),
    };
    result = succeeded(await runtime.invokeConcurrently('ADD', config));
  }
  return result as ChainResult;
}

/** The whole list's DEL for one pod, in reverse order, with the cached result, without blocking. */
async function delConcurrently(runtime: CniRuntime, list: Conflist, cached: ChainResult): Promise<void> {
  for (const plugin of [...list.plugins].reverse()) {
    const config = { ...plugin, cniVersion: list.cniVersion, name: list.name, prevResult: cached };
    const run = await runtime.invokeConcurrently('DEL', config);
    if (run.status !== 0) throw new CniChainError(run);
  }
}

/** Why portmap's IPv6 rules cannot be made in `node`: no ip6tables, or the kernel refuses its nat table. */
function ip6NatSkip(node: TestNamespace): string | undefined {
  try {
    node.exec('ip6tables', ['-t', 'nat', '-S']);
    node.exec('ip6tables-save', ['-t', 'nat']);
    return undefined;
  } catch (error) {
    return `portmap's IPv6 rules need ip6tables and the ip6 nat table: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** The node's nat rules of one family as iptables-save prints them. */
function natRules(node: TestNamespace, family: 4 | 6): string {
  return node.exec(family === 6 ? 'ip6tables-save' : 'iptables-save', ['-t', 'nat']);
}

/** portmap's DNAT of `hostPort`/`protocol` to `address`:`containerPort` (IPv6 addresses in brackets). */
function dnatRule(protocol: string, hostPort: number, address: string, containerPort: number): RegExp {
  const target = address.includes(':') ? `\\[${address}\\]` : address.replaceAll('.', '\\.');
  return new RegExp(`-p ${protocol} .*--dport ${hostPort} .*-j DNAT --to-destination ${target}:${containerPort}`);
}

const PODS = 20;

describe.skipIf(skipReason)('vcnet-cni on a node', () => {
  it.each([
    ['tcfilter', {}],
    ['macvtap with rate limits', { model: 'macvtap', rateLimit: { rx: 20_000_000, tx: 10_000_000 } }],
  ])(
    `${PODS} pods ADDed at once through bridge and vcnet-cni (%s), then DELed at once: nothing of theirs is left`,
    async (label, settings) => {
      const node = makeNamespace('node');
      const list: Conflist = {
        cniVersion: '1.0.0',
        name: 'vcnet-many',
        plugins: [
          bridgeEntry('vcmany0', ['10.231.40.0/24']),
          { type: 'vcnet-cni', stateDir: stateDirectory, ...settings },
        ],
      };
      const pods = Array.from({ length: PODS }, () => {
        const pod = emptyPod();
        return { pod, before: fingerprint(pod), runtime: new CniRuntime(node, attachmentIn(pod)) };
      });

      const results = await Promise.all(pods.map(({ runtime }) => addConcurrently(runtime, list)));
      for (const { pod } of pods) {
        if (label === 'tcfilter') expectPlumbed(pod);
        else
          expect(
            pod.ipJson<Array<{ linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show', 'tap0_kata')[0]?.linkinfo
              ?.info_kind,
          ).toBe('macvtap');
      }
      const addresses = results.map((result) => result.ips[0]?.address);
      expect(new Set(addresses).size).toBe(PODS);
      expect(leases('vcnet-many')).toHaveLength(PODS);
      expect(records()).toHaveLength(PODS);
      expect(node.ipJson<unknown[]>('link', 'show', 'master', 'vcmany0')).toHaveLength(PODS);

      await Promise.all(pods.map(({ runtime }, at) => delConcurrently(runtime, list, results[at]!)));
      for (const { pod, before } of pods) {
        // Each pod as the runtime made it: only lo, no qdisc or filter of vcnet's, as `ip -d link` and tc show it.
        expect(fingerprint(pod)).toEqual(before);
        expect(pod.exec('ip', ['-d', '-br', 'link', 'show']).trim().split('\n')).toHaveLength(1);
        expect(
          pod
            .exec('tc', ['qdisc', 'show'])
            .split('\n')
            .filter((line) => /ingress|htb|tbf/.test(line)),
        ).toEqual([]);
      }
      expect(leases('vcnet-many')).toEqual([]);
      expect(records()).toEqual([]);
      expect(node.ipJson<unknown[]>('link', 'show', 'master', 'vcmany0')).toEqual([]);
    },
    300_000,
  );

  it.each([
    ['dual-stack', ['10.231.41.0/24', 'fd00:231:41::/64']],
    ['IPv6-only', ['fd00:231:42::/64']],
  ])(
    'a %s network: the record gives the guest every address and default route bridge gave eth0; DEL is exact',
    (_label, subnets) => {
      const node = makeNamespace('node');
      const pod = emptyPod();
      const list: Conflist = {
        cniVersion: '1.0.0',
        name: 'vcnet-families',
        plugins: [bridgeEntry('vcfam0', subnets), { type: 'vcnet-cni', stateDir: stateDirectory }],
      };
      const runtime = new CniRuntime(node, attachmentIn(pod));
      let afterBridge: unknown;
      const result = runtime.add(list, (position) => {
        if (position === 0) afterBridge = fingerprint(pod);
      }) as ChainResult;
      expectPlumbed(pod);
      expect(result.ips.map((entry) => entry.address.includes(':'))).toEqual(
        subnets.map((subnet) => subnet.includes(':')),
      );
      const guest = recordedGuestNetwork(
        stateDirectory,
        runtime.attachment.containerId,
        runtime.attachment.interfaceName,
      );
      // Every address of eth0 goes to the guest, its link-local one too (as Kata does): the ones IPAM gave are compared.
      const guestAddresses = guest.interfaces
        .flatMap((entry) => entry.IPAddresses)
        .map((entry) => entry.address)
        .filter((address) => !address.startsWith('fe80:'));
      expect(guestAddresses.sort()).toEqual(result.ips.map((entry) => entry.address.split('/')[0]).sort());
      expect(guest.interfaces.map((entry) => entry.mtu)).toEqual([
        pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'eth0')[0]?.mtu,
      ]);
      const defaults = guest.routes.filter((route) => /^(0\.0\.0\.0|::)\/0$/.test(route.dest));
      expect(defaults.map((route) => route.dest).sort()).toEqual(
        subnets.map((subnet) => (subnet.includes(':') ? '::/0' : '0.0.0.0/0')).sort(),
      );
      runtime.check(list, result);
      runtime.del(list, result, (position) => {
        if (position === 0) expect(fingerprint(pod)).toEqual(afterBridge);
      });
      expect(leases('vcnet-families')).toEqual([]);
      expect(records()).toEqual([]);
    },
  );

  it.each([9000, 1450, 1280])(
    'MTU %i set by the bridge plugin: the tap takes it, CHECK passes, DEL is exact',
    (mtu) => {
      const node = makeNamespace('node');
      const pod = emptyPod();
      const list: Conflist = {
        cniVersion: '1.0.0',
        name: `vcnet-mtu${mtu}`,
        plugins: [
          bridgeEntry('vcmtu0', ['10.231.43.0/24', 'fd00:231:43::/64'], { mtu }),
          { type: 'vcnet-cni', stateDir: stateDirectory },
        ],
      };
      const runtime = new CniRuntime(node, attachmentIn(pod));
      let afterBridge: unknown;
      const result = runtime.add(list, (position) => {
        if (position === 0) afterBridge = fingerprint(pod);
      }) as ChainResult;
      expect(pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'eth0')[0]?.mtu).toBe(mtu);
      expectPlumbed(pod);
      runtime.check(list, result);
      runtime.del(list, result, (position) => {
        if (position === 0) expect(fingerprint(pod)).toEqual(afterBridge);
      });
      expect(records()).toEqual([]);
    },
  );

  it('a 0.4.0 conflist chaining tuning, portmap and bandwidth before vcnet-cni: ADD, CHECK and DEL of the whole list', () => {
    const node = makeNamespace('node');
    const pod = emptyPod();
    const list: Conflist = {
      cniVersion: '0.4.0',
      name: 'vcnet-chained',
      plugins: [
        bridgeEntry('vcchain0', ['10.231.44.0/24', 'fd00:231:44::/64']),
        { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.arp_notify': '1' } },
        {
          type: 'portmap',
          capabilities: { portMappings: true },
          runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] },
        },
        { type: 'bandwidth', ingressRate: 8_000_000, ingressBurst: 80_000, egressRate: 8_000_000, egressBurst: 80_000 },
        { type: 'vcnet-cni', stateDir: stateDirectory },
      ],
    };
    const runtime = new CniRuntime(node, attachmentIn(pod));
    let beforeVcnet: unknown;
    const result = runtime.add(list, (position) => {
      if (position === list.plugins.length - 2) beforeVcnet = fingerprint(pod);
    }) as ChainResult;
    expect(result.cniVersion).toBe('0.4.0');
    expect(result.interfaces.at(-1)).toMatchObject({ name: 'tap0_kata', sandbox: pod.path });
    expectPlumbed(pod);
    expect(pod.exec('sysctl', ['-n', 'net.ipv4.conf.eth0.arp_notify']).trim()).toBe('1');
    // portmap 1.1.1 (Debian 12) fails its own CHECK on a dual-stack pod without vcnet-cni in the list
    // too (its IPv6 check looks for the IPv4 DNAT rules; on an IPv6-only pod, for the IPv4 chain):
    // every other plugin's CHECK runs.
    runtime.check({ ...list, plugins: list.plugins.filter((plugin) => plugin.type !== 'portmap') }, result);
    runtime.del(list, result, (position) => {
      if (position === list.plugins.length - 2) expect(fingerprint(pod)).toEqual(beforeVcnet);
    });
    expect(leases('vcnet-chained')).toEqual([]);
    expect(records()).toEqual([]);
    expect(pod.exec('ip', ['-br', 'link', 'show']).trim().split('\n')).toHaveLength(1);
  });

  it.for([
    ['an IPv6-only', ['fd00:231:45::/64']],
    ['a dual-stack', ['10.231.46.0/24', 'fd00:231:46::/64']],
  ] as const)(
    'portmap before vcnet-cni on %s network: DNAT to the pod in ip6tables while it is up, prevResult passed on whole, DEL leaves nothing',
    ([_label, subnets], context) => {
      const node = makeNamespace('node');
      const skip = ip6NatSkip(node);
      if (skip) {
        console.log(`skipped: ${skip}`);
        context.skip(skip);
      }
      const pod = emptyPod();
      const mappings = [
        { hostPort: 18080, containerPort: 80, protocol: 'tcp' },
        { hostPort: 18053, containerPort: 53, protocol: 'udp' },
      ];
      const list: Conflist = {
        cniVersion: '1.0.0',
        name: 'vcnet-portmap6',
        plugins: [
          bridgeEntry('vcpm6', [...subnets]),
          { type: 'portmap', capabilities: { portMappings: true }, runtimeConfig: { portMappings: mappings } },
          { type: 'vcnet-cni', stateDir: stateDirectory },
        ],
      };
      const runtime = new CniRuntime(node, attachmentIn(pod));
      let afterPortmap: ChainResult | undefined;
      let beforeVcnet: unknown;
      const result = runtime.add(list, (position, stepResult) => {
        if (position === 1) {
          afterPortmap = stepResult as ChainResult;
          beforeVcnet = fingerprint(pod);
        }
      }) as ChainResult;
      expectPlumbed(pod);
      // The addresses bridge gave eth0, as portmap passed them on.
      const addressOf = (family: 4 | 6) =>
        afterPortmap?.ips.find((entry) => entry.address.includes(':') === (family === 6))?.address.split('/')[0];
      const families = subnets.map((subnet) => (subnet.includes(':') ? 6 : 4) as 4 | 6);
      expect(families.map(addressOf).every(Boolean)).toBe(true);

      // portmap's DNAT in the node namespace, to the pod's address of each family, while the pod is up.
      for (const family of families) {
        const rules = natRules(node, family);
        for (const mapping of mappings) {
          expect(rules).toMatch(
            dnatRule(mapping.protocol, mapping.hostPort, addressOf(family)!, mapping.containerPort),
          );
        }
      }

      // vcnet-cni passes on what portmap gave it (bridge's IPv6 addresses and interfaces) with only its tap added.
      expect(afterPortmap?.ips.some((entry) => entry.address.includes(':'))).toBe(true);
      expect(result).toEqual({
        ...afterPortmap,
        interfaces: [
          ...(afterPortmap?.interfaces ?? []),
          { name: 'tap0_kata', mac: expect.any(String), sandbox: pod.path },
        ],
      });

      // portmap 1.1.1 fails its own CHECK here with or without vcnet-cni after it (on an IPv6-only pod
      // it looks for the IPv4 chain, on a dual-stack one for IPv4 rules in ip6tables): the others' CHECK runs.
      runtime.check({ ...list, plugins: list.plugins.filter((plugin) => plugin.type !== 'portmap') }, result);
      runtime.del(list, result, (position) => {
        // vcnet-cni's DEL has run: the pod as portmap left it (no tap, no filter), portmap's rules still there.
        if (position === 1) {
          expect(fingerprint(pod)).toEqual(beforeVcnet);
          expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain(
            'tap0_kata',
          );
          expect(pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth0', 'ingress')).toEqual([]);
          expect(natRules(node, 6)).toMatch(/--dport 18080 /);
        }
      });
      for (const family of families) {
        const rules = natRules(node, family);
        expect(rules).not.toContain(addressOf(family)!);
        expect(rules).not.toMatch(/--dport 180(80|53)/);
      }
      expect(leases('vcnet-portmap6')).toEqual([]);
      expect(records()).toEqual([]);
      expect(node.ipJson<unknown[]>('link', 'show', 'master', 'vcpm6')).toEqual([]);
      expect(pod.exec('ip', ['-br', 'link', 'show']).trim().split('\n')).toHaveLength(1);
    },
  );
});
