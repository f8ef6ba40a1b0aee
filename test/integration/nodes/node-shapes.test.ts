/**
 * Pods shaped like real nodes' (issue 12), through the public CLI (vcnet attach / detach), for the
 * tcfilter, macvtap and none models: each case attaches, maybe changes the pod meanwhile as a user
 * would, detaches, and diffs a fine snapshot of the pod namespace before and after.
 * Cases still open for a model are listed in KNOWN_GAPS and run as it.fails.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import {
  attachThenDetach,
  hostSnapshot,
  logRecords,
  MODELS,
  type Model,
  nodeSnapshot,
} from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-nodes-');

/**
 * Whole seconds since `start` (performance.now()), rounded up, and one more for the kernel's own
 * rounding of a lifetime: a bound read from the clock, which a loaded machine stretches, not a
 * fixed one a slow run breaks.
 */
const secondsSince = (start: number) => Math.ceil((performance.now() - start) / 1000) + 1;

/** Runs `ip` commands in the namespace as one `ip -batch` file: thousands of lines, one process. */
function ipBatch(namespace: TestNamespace, commands: readonly string[]): void {
  const file = join(stateDirectory(), `ip-${Date.now()}.batch`);
  writeFileSync(file, `${commands.join('\n')}\n`);
  namespace.exec('ip', ['-batch', file]);
}

/** A pod whose only addressed link is eth0 (its veth peer stays in the pod, address-less), without DAD. */
function routedPod(name: string, address: string): TestNamespace {
  const pod = makeNamespace(name);
  // No DAD: link-local addresses and their routes appear at once, not between two snapshots.
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  ipBatch(pod, [
    'link add eth0 type veth peer name peer0',
    `addr add ${address} dev eth0`,
    'link set eth0 up',
    'link set peer0 up',
  ]);
  return pod;
}

/** The kernel marks carrier loss (and its routes linkdown) asynchronously: wait for it before a snapshot. */
function waitForNoCarrier(pod: TestNamespace, name: string): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    const [link] = pod.ipJson<Array<{ flags: string[] }>>('link', 'show', name);
    if (link?.flags.includes('NO-CARRIER')) {
      const routes = pod.ipJson<Array<{ flags: string[] }>>('route', 'show', 'dev', name);
      if (routes.every((route) => route.flags.includes('linkdown'))) return;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  throw new Error(`${name} still has carrier after 5 s`);
}

/** One link as the user sees it: MAC, MTU, flags, qdiscs, addresses and routes. */
function linkView(pod: TestNamespace, name: string): Record<string, unknown> {
  const [link] = pod.ipJson<Array<Record<string, unknown>>>('link', 'show', name);
  return {
    address: link?.address,
    mtu: link?.mtu,
    qdisc: link?.qdisc,
    addresses: pod
      .ipJson<Array<{ addr_info: Array<{ local: string }> }>>('addr', 'show', 'dev', name)[0]
      ?.addr_info.map((a) => a.local),
    qdiscs: pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', name).map((q) => q.kind),
    routes: pod.ipJson<unknown[]>('route', 'show', 'dev', name),
  };
}

/** Attach, detach, and expect both to succeed and the pod to be exactly as before. */
function expectExactRoundTrip(
  pod: TestNamespace,
  model: Model,
  options: Parameters<typeof attachThenDetach>[3] = {},
): ReturnType<typeof attachThenDetach> {
  const before = nodeSnapshot(pod);
  const run = attachThenDetach(pod, model, stateDirectory(), options);
  expect(run.attached.stderr.split('\n').filter((line) => line.includes('"level":50'))).toEqual([]);
  expect(run.attached.status, run.attached.stderr).toBe(0);
  expect(run.detached.status, run.detached.stderr).toBe(0);
  expect(nodeSnapshot(pod)).toEqual(before);
  return run;
}

/**
 * Cases that fail today, by model, with why: none now. A gap found later goes here, runs as it.fails
 * (so its fix shows up as a failure to remove the entry) and prints its reason.
 */
const KNOWN_GAPS: Partial<Record<Model, Record<string, string>>> = {};

describe.each(MODELS)('node shapes, model %s', (model) => {
  /** it(), or it.fails() with the reason printed when the case is a known gap for this model. */
  const nodeCase = (name: string, body: () => void, timeoutMs?: number) => {
    const gap = KNOWN_GAPS[model]?.[name];
    if (!gap) return it(name, body, timeoutMs);
    console.log(`known gap, ${model}: ${name}: ${gap}`);
    return it.fails(`${name} [known gap: ${gap}]`, body, timeoutMs);
  };
  nodeCase('skips an address-less bridge and ifb with one notice each, and attaches eth0', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'br-side', 'type', 'bridge']);
    pod.exec('ip', ['link', 'set', 'br-side', 'up']);
    pod.exec('ip', ['link', 'add', 'ifb-side', 'type', 'ifb']);
    const run = expectExactRoundTrip(pod, model);
    expect(run.output?.endpoints.map((endpoint) => endpoint.source)).toEqual(['eth0']);
    const notices = logRecords(run.attached.stderr).map((record) => record.msg);
    expect(notices).toEqual([
      expect.stringMatching(/^skipped br-side \(kind bridge\): no address/),
      expect.stringMatching(/^skipped ifb-side \(kind ifb\): no address/),
    ]);
  });

  nodeCase('attaches an address-less link when it is named with --interface', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'bare0', 'type', 'veth', 'peer', 'name', 'bare1']);
    const run = expectExactRoundTrip(pod, model, { attachArgs: ['--interface', 'bare0'] });
    expect(run.output?.endpoints.map((endpoint) => endpoint.source)).toEqual(['eth0', 'bare0']);
  });

  nodeCase('skips an address-less vxlan; a vxlan with an address is refused by name and nothing is left', () => {
    const { pod } = makePod();
    try {
      pod.exec('ip', ['link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'dev', 'eth0']);
    } catch (error) {
      console.log(
        `skip vxlan node shape: this kernel cannot create vxlan links: ${String((error as { stderr?: string }).stderr ?? error).trim()}`,
      );
      return;
    }
    expectExactRoundTrip(pod, model);
    pod.exec('ip', ['addr', 'add', '10.42.0.1/24', 'dev', 'vx0']);
    const before = nodeSnapshot(pod);
    const run = attachThenDetach(pod, model, stateDirectory(), { sandbox: 'vx' });
    expect(run.attached.status).toBe(1);
    expect(run.attached.stderr).toContain('unsupported network interface vx0: kind vxlan');
    expect(nodeSnapshot(pod)).toEqual(before);
  });

  nodeCase('a pod interface without carrier (its peer is down)', () => {
    const { pod, node } = makePod();
    node.exec('ip', ['link', 'set', 'veth0', 'down']);
    waitForNoCarrier(pod, 'eth0');
    expectExactRoundTrip(pod, model);
  });

  nodeCase(
    '300 links, of which 30 have addresses',
    () => {
      const pod = makeNamespace('pod300');
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
      const commands: string[] = [];
      for (let i = 0; i < 150; i++) {
        commands.push(`link add a${i} type veth peer name b${i}`);
        commands.push(`link set a${i} up`);
        commands.push(`link set b${i} up`);
        if (i < 30) commands.push(`addr add 10.${60 + Math.floor(i / 250)}.${i % 250}.1/24 dev a${i}`);
      }
      ipBatch(pod, commands);
      const run = expectExactRoundTrip(pod, model);
      expect(run.output?.endpoints).toHaveLength(30);
    },
    240_000,
  );

  nodeCase('50 addresses on one link', () => {
    const { pod } = makePod();
    for (let i = 10; i < 35; i++) pod.exec('ip', ['addr', 'add', `10.201.${i}.2/24`, 'dev', 'eth0']);
    for (let i = 10; i < 35; i++) pod.exec('ip', ['addr', 'add', `fd00:99:${i}::2/64`, 'dev', 'eth0', 'nodad']);
    expectExactRoundTrip(pod, model);
  });

  it.each([
    ['off', '0'],
    ['on', '1'],
  ])('secondary IPv4 addresses with promote_secondaries %s', (_label, value) => {
    const { pod } = makePod();
    pod.exec('sysctl', ['-q', '-w', `net.ipv4.conf.eth0.promote_secondaries=${value}`]);
    pod.exec('ip', ['addr', 'add', '10.200.0.3/24', 'dev', 'eth0']);
    pod.exec('ip', ['addr', 'add', '10.200.0.4/24', 'dev', 'eth0']);
    expectExactRoundTrip(pod, model);
  });

  nodeCase('routes with metrics, a realm and several next hops', () => {
    const { pod, node } = makePod();
    node.exec('ip', ['addr', 'add', '10.200.0.5/24', 'dev', 'veth0']);
    pod.exec('ip', [
      'route',
      'add',
      '10.50.0.0/16',
      'via',
      '10.200.0.1',
      'advmss',
      '1300',
      'initcwnd',
      '20',
      'rto_min',
      '50ms',
    ]);
    pod.exec('ip', ['route', 'add', '10.51.0.0/16', 'via', '10.200.0.1', 'realm', '7']);
    pod.exec('ip', [
      'route',
      'add',
      '10.52.0.0/16',
      'nexthop',
      'via',
      '10.200.0.1',
      'weight',
      '1',
      'nexthop',
      'via',
      '10.200.0.5',
      'weight',
      '2',
    ]);
    expectExactRoundTrip(pod, model);
  });

  nodeCase('routes with a gateway of the other family, an IPv6 preference, and one through a nexthop object', () => {
    const { pod } = makePod();
    pod.exec('ip', ['route', 'add', '10.56.0.0/16', 'via', 'inet6', 'fd00:200::1', 'dev', 'eth0']);
    pod.exec('ip', ['-6', 'route', 'add', 'fd56::/48', 'via', 'fd00:200::1', 'pref', 'high']);
    pod.exec('ip', ['nexthop', 'add', 'id', '7', 'via', '10.200.0.1', 'dev', 'eth0']);
    pod.exec('ip', ['route', 'add', '10.57.0.0/16', 'nhid', '7']);
    expectExactRoundTrip(pod, model);
  });

  nodeCase('IPv6 routes with a lifetime: kept with what is left of it, gone once it has passed', () => {
    const { pod } = makePod();
    const set = performance.now();
    pod.exec('ip', ['-6', 'route', 'add', 'fd57::/48', 'via', 'fd00:200::1', 'expires', '600']);
    pod.exec('ip', ['-6', 'route', 'add', 'fd58::/48', 'via', 'fd00:200::1', 'expires', '2']);
    const lifetimes = () =>
      Object.fromEntries(
        pod
          .ipJson<Array<{ dst: string; expires?: number }>>('-6', 'route', 'show')
          .filter((entry) => entry.expires !== undefined)
          .map((entry) => [entry.dst, entry.expires]),
      );
    const without = (snapshot: Record<string, unknown>) => ({
      ...snapshot,
      routes: (snapshot.routes as string[]).filter((line) => !line.includes('"expires"')),
      routeDetails: (snapshot.routeDetails as string[]).filter((line) => !line.includes('"expires"')),
    });
    const before = nodeSnapshot(pod);
    // The VM runs longer than the short lifetime: whatever the model did, that route is gone after.
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000),
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    const left = lifetimes();
    const passed = secondsSince(set);
    expect(Object.keys(left)).toEqual(['fd57::/48']);
    // What was left of it: the 3 s the VM ran at least are gone (not reset to 600), and no more than passed.
    expect(left['fd57::/48']).toBeGreaterThanOrEqual(600 - passed);
    expect(left['fd57::/48']).toBeLessThan(598);
    expect(without(nodeSnapshot(pod))).toEqual(without(before));
  });

  nodeCase(
    'addresses with lifetimes (DHCP, SLAAC): kept with what is left, deprecated or gone as they would be',
    () => {
      const { pod } = makePod();
      const set = performance.now();
      pod.exec('ip', ['addr', 'add', '10.200.0.7/24', 'dev', 'eth0', 'valid_lft', '600', 'preferred_lft', '2']);
      pod.exec('ip', ['addr', 'add', '10.200.0.8/24', 'dev', 'eth0', 'valid_lft', '2', 'preferred_lft', '2']);
      pod.exec('ip', [
        '-6',
        'addr',
        'add',
        'fd00:201::2/64',
        'dev',
        'eth0',
        'nodad',
        'valid_lft',
        '600',
        'preferred_lft',
        '500',
      ]);
      const lifetimes = () =>
        Object.fromEntries(
          pod
            .ipJson<
              Array<{ addr_info: Array<{ local: string; valid_life_time: number; preferred_life_time: number }> }>
            >('addr', 'show', 'dev', 'eth0')[0]!
            .addr_info.map((info) => [info.local, [info.valid_life_time, info.preferred_life_time]]),
        );
      const before = lifetimes();
      // The VM runs longer than the short lifetimes: whatever the model did, the kernel's answer after.
      const run = attachThenDetach(pod, model, stateDirectory(), {
        between: () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000),
      });
      expect(run.attached.status, run.attached.stderr).toBe(0);
      expect(run.detached.status, run.detached.stderr).toBe(0);
      const after = lifetimes();
      const passed = secondsSince(set);
      const FOREVER = 4294967295;
      expect(Object.keys(after).sort()).toEqual(
        Object.keys(before)
          .filter((local) => local !== '10.200.0.8')
          .sort(),
      );
      for (const local of ['10.200.0.2', 'fd00:200::2']) expect(after[local], local).toEqual([FOREVER, FOREVER]);
      // What was left of each: the 3 s the VM ran at least are gone (not reset), and no more than passed.
      expect(after['10.200.0.7']![0]).toBeGreaterThanOrEqual(600 - passed);
      expect(after['10.200.0.7']![0]).toBeLessThan(598);
      expect(after['10.200.0.7']![1]).toBe(0);
      expect(after['fd00:201::2']![0]).toBeLessThan(598);
      expect(after['fd00:201::2']![1]).toBeGreaterThanOrEqual(500 - passed);
      expect(after['fd00:201::2']![1]).toBeLessThan(498);
    },
  );

  nodeCase('addresses with a metric for their prefix route (IFA_RT_PRIORITY)', () => {
    const { pod } = makePod();
    pod.exec('ip', ['addr', 'add', '10.210.0.2/24', 'dev', 'eth0', 'metric', '77']);
    pod.exec('ip', ['-6', 'addr', 'add', 'fd00:210::2/64', 'dev', 'eth0', 'nodad', 'metric', '55']);
    expectExactRoundTrip(pod, model);
    expect(pod.exec('ip', ['-d', 'addr', 'show', 'dev', 'eth0'])).toMatch(/10\.210\.0\.2\/24 metric 77/);
    expect(pod.exec('ip', ['-6', 'route', 'show', 'fd00:210::/64'])).toMatch(/metric 55/);
  });

  nodeCase(
    'IPv6 privacy addresses (use_tempaddr, mngtmpaddr): the kernel makes a new one, no old one comes back',
    () => {
      const { pod } = makePod();
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.use_tempaddr=2']);
      pod.exec('ip', [
        '-6',
        'addr',
        'add',
        'fd00:220::2/64',
        'dev',
        'eth0',
        'mngtmpaddr',
        'nodad',
        'valid_lft',
        '3600',
        'preferred_lft',
        '1800',
      ]);
      const inPrefix = () =>
        pod
          .ipJson<Array<{ addr_info: Array<{ local: string; temporary?: boolean }> }>>(
            '-6',
            'addr',
            'show',
            'dev',
            'eth0',
          )[0]!
          .addr_info.filter((info) => info.local.startsWith('fd00:220:'))
          .map((info) => ({ local: info.local, temporary: info.temporary === true }));
      const before = inPrefix();
      expect(before.filter((entry) => entry.temporary)).toHaveLength(1);
      const run = attachThenDetach(pod, model, stateDirectory());
      expect(run.attached.status, run.attached.stderr).toBe(0);
      expect(run.detached.status, run.detached.stderr).toBe(0);
      const after = inPrefix();
      // The public address as it was, and one privacy address: the old one (models that leave the
      // addresses alone) or a new one the kernel made, never an old one put back as an ordinary address.
      expect(after.filter((entry) => !entry.temporary)).toEqual(before.filter((entry) => !entry.temporary));
      expect(after.filter((entry) => entry.temporary)).toHaveLength(1);
    },
  );

  nodeCase('permanent and proxy neighbours with a protocol, and an IPv6 router entry', () => {
    const { pod } = makePod();
    for (const line of [
      'neigh add 10.200.0.20 lladdr 02:00:00:00:00:20 dev eth0 nud permanent protocol static',
      '-6 neigh add fd00:200::20 lladdr 02:00:00:00:00:21 dev eth0 nud permanent router',
      'neigh add proxy 10.200.0.21 dev eth0 protocol 42',
    ]) {
      pod.exec('ip', line.split(' '));
    }
    const details = () =>
      [
        ...pod.exec('ip', ['-d', 'neigh', 'show', 'nud', 'permanent']).split('\n'),
        ...pod.exec('ip', ['-d', 'neigh', 'show', 'proxy']).split('\n'),
      ]
        .filter(Boolean)
        .sort();
    const before = details();
    expect(before.join('\n')).toMatch(/proto static/);
    expectExactRoundTrip(pod, model);
    expect(details()).toEqual(before);
  });

  nodeCase('an IPv4 address with a peer (point-to-point)', () => {
    const { pod } = makePod();
    pod.exec('ip', ['addr', 'add', '10.12.3.5', 'peer', '10.12.3.1', 'dev', 'eth0']);
    const peers = () =>
      pod
        .ipJson<Array<{ addr_info: Array<{ local: string; address?: string; prefixlen: number }> }>>(
          '-4',
          'addr',
          'show',
          'dev',
          'eth0',
        )[0]!
        .addr_info.map((info) => `${info.local} peer ${info.address ?? '-'}/${info.prefixlen}`);
    const before = peers();
    expect(before).toContain('10.12.3.5 peer 10.12.3.1/32');
    expectExactRoundTrip(pod, model);
    expect(peers()).toEqual(before);
  });

  nodeCase('a route with a TOS', () => {
    const { pod } = makePod();
    pod.exec('ip', ['route', 'add', '10.98.0.0/16', 'tos', '0x10', 'via', '10.200.0.1', 'dev', 'eth0']);
    pod.exec('ip', ['route', 'add', '10.98.0.0/16', 'via', '10.200.0.1', 'dev', 'eth0', 'metric', '5']);
    expectExactRoundTrip(pod, model);
    expect(pod.exec('ip', ['route', 'show', '10.98.0.0/16'])).toMatch(/tos 0x10 via 10\.200\.0\.1/);
  });

  nodeCase('static neighbours with nud noarp (IPv4 and IPv6)', () => {
    const { pod } = makePod();
    pod.exec('ip', ['neigh', 'add', '10.200.0.30', 'lladdr', '02:00:00:00:00:30', 'dev', 'eth0', 'nud', 'noarp']);
    pod.exec('ip', [
      '-6',
      'neigh',
      'add',
      'fd00:200::30',
      'lladdr',
      '02:00:00:00:00:31',
      'dev',
      'eth0',
      'nud',
      'noarp',
    ]);
    const noarp = () =>
      ['-4', '-6']
        .flatMap((family) => pod.exec('ip', [family, 'neigh', 'show', 'nud', 'noarp', 'dev', 'eth0']).split('\n'))
        .filter((line) => line.includes('lladdr 02:'))
        .sort();
    const before = noarp();
    expect(before).toHaveLength(2);
    expectExactRoundTrip(pod, model);
    expect(noarp()).toEqual(before);
  });

  nodeCase('deprecated addresses that never expire (preferred_lft 0), IPv4 and IPv6', () => {
    const { pod } = makePod();
    pod.exec('ip', ['addr', 'add', '10.12.2.5/24', 'dev', 'eth0', 'preferred_lft', '0']);
    pod.exec('ip', ['-6', 'addr', 'add', 'fd00:12::5/64', 'dev', 'eth0', 'preferred_lft', '0', 'nodad']);
    const deprecated = () =>
      pod
        .ipJson<Array<{ addr_info: Array<{ local: string; deprecated?: boolean; valid_life_time: number }> }>>(
          'addr',
          'show',
          'dev',
          'eth0',
        )[0]!
        .addr_info.filter((info) => info.deprecated)
        .map((info) => `${info.local} valid ${info.valid_life_time}`)
        .sort();
    const before = deprecated();
    expect(before).toEqual(['10.12.2.5 valid 4294967295', 'fd00:12::5 valid 4294967295']);
    expectExactRoundTrip(pod, model);
    expect(deprecated()).toEqual(before);
  });

  nodeCase('routes the address flush takes that the kernel does not make again (AnyIP local, proto kernel)', () => {
    const { pod } = makePod();
    pod.exec('ip', ['route', 'add', 'local', '10.99.0.0/16', 'dev', 'eth0', 'table', 'local']);
    pod.exec('ip', [
      'route',
      'add',
      '10.13.9.0/24',
      'dev',
      'eth0',
      'proto',
      'kernel',
      'scope',
      'link',
      'src',
      '10.200.0.2',
    ]);
    pod.exec('ip', ['route', 'add', '10.14.9.0/24', 'dev', 'eth0', 'table', '100']);
    pod.exec('ip', ['-6', 'route', 'add', 'local', 'fd99::/64', 'dev', 'eth0', 'table', 'local']);
    expectExactRoundTrip(pod, model);
    expect(pod.exec('ip', ['route', 'show', 'table', 'local', '10.99.0.0/16'])).toMatch(
      /local 10\.99\.0\.0\/16 dev eth0/,
    );
    expect(pod.exec('ip', ['route', 'show', '10.13.9.0/24'])).toMatch(/proto kernel/);
  });

  // The restore batch grows past the writer's first buffers (1, 2, 4 KiB) at a different place for
  // each count: a fixed-size attribute across the end once crashed the detach (RangeError), leaving
  // the pod without its addresses and routes under the macvtap model.
  nodeCase(
    'one address and 8 to 60 routes through a gateway: each restore batch is exact',
    () => {
      const pod = routedPod('routes', '10.60.0.2/24');
      let routes = 0;
      for (const count of [8, 16, 20, 40, 60]) {
        const commands: string[] = [];
        for (; routes < count; routes++) commands.push(`route add 10.61.${routes}.0/24 via 10.60.0.1`);
        ipBatch(pod, commands);
        expectExactRoundTrip(pod, model, { sandbox: `routes${count}` });
      }
    },
    60_000,
  );

  // CNI ptp replaces the kernel's prefix route with one through its gateway (RouteReplace), after a
  // /32 to the gateway. A restore that adds routes was refused as present (EEXIST) once the address
  // brought the kernel's prefix route back, and detach left the on-link route, saying "already gone".
  nodeCase('a subnet route through a gateway in place of the prefix route (CNI ptp)', () => {
    const pod = routedPod('ptp', '10.214.0.2/24');
    ipBatch(pod, [
      'route add 10.214.0.1/32 dev eth0 scope link src 10.214.0.2',
      'route replace 10.214.0.0/24 via 10.214.0.1 dev eth0 src 10.214.0.2',
      'route add default via 10.214.0.1 dev eth0',
    ]);
    expectExactRoundTrip(pod, model);
    expect(pod.exec('ip', ['route', 'show', '10.214.0.0/24'])).toMatch(/via 10\.214\.0\.1/);
  });

  // The kernel renames a renamed link's address labels (eth0 -> ren, eth0:1 -> ren:1); detach puts
  // addresses back under the name the link has then, not the one it had at attach.
  nodeCase('a pod link renamed while attached gets its addresses back labelled with its new name', () => {
    const { pod } = makePod();
    pod.exec('ip', ['addr', 'add', '10.200.0.9/24', 'dev', 'eth0', 'label', 'eth0:1']);
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => pod.exec('ip', ['link', 'set', 'eth0', 'name', 'ren0']),
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    const labels = pod
      .ipJson<Array<{ addr_info: Array<{ local: string; label?: string }> }>>('-4', 'addr', 'show', 'dev', 'ren0')[0]!
      .addr_info.map((info) => `${info.local} ${info.label}`)
      .sort();
    expect(labels).toEqual(['10.200.0.2 ren0', '10.200.0.9 ren0:1']);
  });

  nodeCase('proxy neighbours', () => {
    const { pod } = makePod();
    pod.exec('ip', ['neigh', 'add', 'proxy', '10.200.0.77', 'dev', 'eth0']);
    pod.exec('ip', ['-6', 'neigh', 'add', 'proxy', 'fd00:200::77', 'dev', 'eth0']);
    expectExactRoundTrip(pod, model);
  });

  nodeCase('a macvlan beside the veth', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'mv0', 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge']);
    pod.exec('ip', ['link', 'set', 'mv0', 'up']);
    pod.exec('ip', ['addr', 'add', '10.200.0.40/24', 'dev', 'mv0']);
    const run = expectExactRoundTrip(pod, model);
    expect(run.output?.endpoints.map((endpoint) => endpoint.source).sort()).toEqual(['eth0', 'mv0']);
  });

  nodeCase('IPv6 only', () => {
    const node = makeNamespace('node');
    const pod = makeNamespace('pod6');
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    node.exec('ip', ['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
    node.exec('ip', ['link', 'set', 'veth0', 'up']);
    pod.exec('ip', ['link', 'set', 'eth0', 'up']);
    pod.exec('ip', ['addr', 'add', 'fd00:6::2/64', 'dev', 'eth0', 'nodad']);
    pod.exec('ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:6::1']);
    const run = expectExactRoundTrip(pod, model);
    expect(run.output?.endpoints).toHaveLength(1);
  });

  nodeCase('IPv6 off in the pod, with and without carrier', () => {
    const { pod, node } = makePod();
    // As a cluster without IPv6 leaves it: off for every link, eth0 included (its IPv6 addresses go).
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
    expectExactRoundTrip(pod, model);
    node.exec('ip', ['link', 'set', 'veth0', 'down']);
    waitForNoCarrier(pod, 'eth0');
    expectExactRoundTrip(pod, model);
  });

  nodeCase('MTU 9000', () => {
    const { pod, node } = makePod();
    node.exec('ip', ['link', 'set', 'veth0', 'mtu', '9000']);
    pod.exec('ip', ['link', 'set', 'eth0', 'mtu', '9000']);
    expectExactRoundTrip(pod, model);
  });

  nodeCase('an interface renamed between attach and detach', () => {
    const { pod } = makePod();
    // What vcnet answers for: the link itself and the tc objects. (The user's down/up for the rename
    // costs addresses, routes and neighbours by itself.)
    const view = () => {
      const { links, qdiscs, filters } = nodeSnapshot(pod);
      return { links, qdiscs, filters };
    };
    const before = view();
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => {
        pod.exec('ip', ['link', 'set', 'eth0', 'down']);
        pod.exec('ip', ['link', 'set', 'eth0', 'name', 'eth0r']);
        pod.exec('ip', ['link', 'set', 'eth0r', 'up']);
      },
    });
    expect(run.detached.status).toBe(0);
    pod.exec('ip', ['link', 'set', 'eth0r', 'down']);
    pod.exec('ip', ['link', 'set', 'eth0r', 'name', 'eth0']);
    pod.exec('ip', ['link', 'set', 'eth0', 'up']);
    expect(view()).toEqual(before);
  });

  nodeCase('an interface deleted and recreated between attach and detach', () => {
    const { pod, node } = makePod();
    let recreated: Record<string, unknown> = {};
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => {
        pod.exec('ip', ['link', 'del', 'eth0']);
        node.exec('ip', ['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
        node.exec('ip', ['link', 'set', 'veth0', 'up']);
        pod.exec('ip', ['link', 'set', 'eth0', 'up']);
        pod.exec('ip', ['addr', 'add', '10.200.0.2/24', 'dev', 'eth0']);
        recreated = linkView(pod, 'eth0');
      },
    });
    expect(run.detached.status).toBe(0);
    // The new eth0 is someone else's: nothing of the old one is written onto it, and detach says so.
    expect(linkView(pod, 'eth0')).toEqual(recreated);
    if (model !== 'none') {
      expect(logRecords(run.detached.stderr).map((record) => record.msg)).toContainEqual(
        expect.stringMatching(/^eth0 is another link than the one attach changed/),
      );
    }
  });

  nodeCase('a MAC changed by the user after attach', () => {
    const { pod } = makePod();
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => pod.exec('ip', ['link', 'set', 'eth0', 'address', '02:11:22:33:44:55']),
    });
    expect(run.detached.status).toBe(0);
    expect(pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]?.address).toBe('02:11:22:33:44:55');
    if (model === 'macvtap') {
      // Only the macvtap model changes the pod link's MAC: there detach says why it left the user's.
      expect(logRecords(run.detached.stderr).map((record) => record.msg)).toContainEqual(
        expect.stringMatching(/^left the MAC of eth0 as it is \(02:11:22:33:44:55\)/),
      );
    }
  });

  it("leaves someone else's ingress filter on eth0 added after attach", () => {
    const { pod } = makePod();
    const before = nodeSnapshot(pod);
    let filtersAfterAttach = 0;
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => {
        // tcfilter has put an ingress qdisc on eth0 already; the others have not.
        if (pod.tcJson<unknown[]>('qdisc', 'show', 'dev', 'eth0', 'ingress').length === 0) {
          pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
        }
        // A classifying filter (flowid): this kernel lacks act_gact, so no "action pass".
        pod.exec('tc', [
          'filter',
          'add',
          'dev',
          'eth0',
          'ingress',
          'prio',
          '7',
          'protocol',
          'ip',
          'u32',
          'match',
          'ip',
          'dst',
          '10.9.9.9/32',
          'flowid',
          '1:7',
        ]);
        filtersAfterAttach = pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth0', 'ingress').length;
      },
    });
    // tcfilter already has an ingress qdisc on eth0; for the others the user's qdisc is new.
    expect(run.attached.status).toBe(0);
    expect(run.detached.status).toBe(0);
    const filters = pod.tcJson<Array<{ pref: number }>>('filter', 'show', 'dev', 'eth0', 'ingress');
    expect(filters.some((filter) => filter.pref === 7)).toBe(true);
    expect(filtersAfterAttach).toBeGreaterThan(0);
    // Everything else as before, plus the user's own qdisc and filter.
    pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    expect(nodeSnapshot(pod)).toEqual(before);
  });
});

/**
 * `vcnet` run inside `standIn` (ip netns exec), so that "the namespace vcnet itself runs in" is a
 * throwaway pod with an eth0, address and routes: were the guard to regress, the attach would
 * redirect that pod's eth0, not the machine's.
 */
function vcnetInside(standIn: TestNamespace, args: string[]): { status: number; stderr: string } {
  const result = spawnSync('ip', ['netns', 'exec', standIn.name, process.execPath, CLI, ...args], {
    encoding: 'utf8',
  });
  return { status: result.status ?? -1, stderr: result.stderr };
}

describe.each(MODELS)('never the host, model %s', (model) => {
  it('refuses vcnet attach --netns /proc/self/ns/net, and the namespace it runs in is unchanged', () => {
    const { pod: standIn } = makePod();
    const before = nodeSnapshot(standIn);
    const hostBefore = hostSnapshot();
    const result = vcnetInside(standIn, [
      'attach',
      '--sandbox',
      `host-${model}`,
      '--netns',
      '/proc/self/ns/net',
      '--model',
      model,
      '--state-dir',
      stateDirectory(),
    ]);
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toContain(
      'refusing to attach in /proc/self/ns/net: it is the network namespace vcnet itself runs in',
    );
    expect(nodeSnapshot(standIn)).toEqual(before);
    expect(hostSnapshot()).toEqual(hostBefore);
    expect(readdirSync(stateDirectory())).toEqual([]);
  });

  it('refuses the namespace it runs in reached through another path (its bind mount under /run/netns)', () => {
    const { pod: standIn } = makePod();
    const before = nodeSnapshot(standIn);
    const result = vcnetInside(standIn, [
      'attach',
      '--sandbox',
      `host1-${model}`,
      '--netns',
      standIn.path,
      '--model',
      model,
      '--state-dir',
      stateDirectory(),
    ]);
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toContain(`refusing to attach in ${standIn.path}`);
    expect(nodeSnapshot(standIn)).toEqual(before);
  });
});

describe('a pod with 20,000 routes, model macvtap', () => {
  // The macvtap model takes the pod link's addresses and routes and puts them back: 20,000 route
  // deletes, then 20,000 adds, in one batch each. Sent in one go, their acks overflowed the socket's
  // receive buffer (ENOBUFS): the attach failed, reported everything removed, and the routes were gone.
  it('attaches and detaches, and every route is back', () => {
    const pod = routedPod('routes20k', '10.90.0.2/16');
    const lines: string[] = [];
    for (let i = 0; i < 20_000; i++)
      lines.push(`route add 172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32 via 10.90.0.1`);
    ipBatch(pod, lines);
    const routes = () => pod.exec('ip', ['route', 'show']).split('\n').filter(Boolean).sort();
    const before = routes();
    expect(before.length).toBeGreaterThan(20_000);
    const run = attachThenDetach(pod, 'macvtap', stateDirectory(), {
      sandbox: 'routes20k',
      between: () => expect(pod.exec('ip', ['route', 'show', 'dev', 'eth0'])).toBe(''),
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(routes()).toEqual(before);
  }, 180_000);
});
