/**
 * `npm run bench` compares vcnet's attach with the same attach written in C (bench/c/tcfilter-attach.c).
 * That comparison is fair only if the C program makes exactly the plumbing vcnet makes: the same tap
 * (flags, MTU, group, tun options), the same qdiscs and the same filters. This test builds both in
 * two namespaces shaped alike and compares them; it also checks the program's figures and that it
 * leaves nothing behind. Speed is not asserted.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cAttachUnavailableReason, runCAttachReference } from '../../bench/c-attach-reference.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { attachByPlan } from '../../src/network/model/plumbing-context.js';
import { cleanupNamespaces, makeNamespace, namespaceView, type TestNamespace } from '../helpers/namespace.js';

const skipReason = cAttachUnavailableReason();
if (skipReason) console.log(`skipping the C attach reference: ${skipReason}`);

afterEach(() => cleanupNamespaces());

/** What a tcfilter attach leaves, without what differs between any two namespaces (MACs, stats). */
function plumbing(namespace: TestNamespace): Record<string, unknown> {
  const [tap] = namespace.ipJson<Array<Record<string, unknown>>>('-d', 'link', 'show', 'tap0_kata');
  const { address, broadcast, ifindex, ...tapShape } = tap ?? {};
  const filters = (dev: string) =>
    namespace
      .tcJson<Array<Record<string, unknown>>>('filter', 'show', 'dev', dev, 'ingress')
      .map((filter) =>
        JSON.stringify(filter, (key, value) => (['stats', 'ref', 'bind'].includes(key) ? undefined : value)),
      );
  return {
    tap: tapShape,
    qdiscs: namespace
      .tcJson<Array<Record<string, unknown>>>('qdisc', 'show')
      .map((q) => `${q.dev} ${q.kind} ${q.handle} ${q.parent ?? 'root'}`)
      .sort(),
    filtersOnPodLink: filters('eth0'),
    filtersOnTap: filters('tap0_kata'),
  };
}

async function podNamespace(namespace: TestNamespace): Promise<void> {
  const handle = NetlinkHandle.open(namespace.path);
  try {
    await handle.addLink({ name: 'eth0', up: true, data: { kind: 'veth', peer: { name: 'peer0' } } });
  } finally {
    handle.close();
  }
}

describe.skipIf(skipReason !== undefined)('the C attach that npm run bench compares vcnet with', () => {
  it('makes the same tap, qdiscs and filters as vcnet tcfilter attach', async () => {
    const ours = makeNamespace('cref');
    await podNamespace(ours);
    const handle = NetlinkHandle.open(ours.path);
    try {
      const source = await handle.linkByName('eth0');
      await attachByPlan(
        {
          handle,
          namespacePath: ours.path,
          queues: 1,
          keepFds: false,
          vhostNet: 'off',
          qdiscs: (await handle.snapshot(['qdiscs'])).qdiscs,
        },
        { model: 'tcfilter', source, tapName: 'tap0_kata' },
      );
    } finally {
      handle.close();
    }
    const vcnetPlumbing = plumbing(ours);
    let cPlumbing: Record<string, unknown> | undefined;
    const result = await runCAttachReference(3, (path) => {
      cPlumbing = plumbing(namespaceView(basename(path), path));
    });
    expect(cPlumbing).toEqual(vcnetPlumbing);
    // Something to compare: the redirect is there (tc lists a u32 filter as its hash table and its node).
    for (const filters of [vcnetPlumbing.filtersOnPodLink, vcnetPlumbing.filtersOnTap] as string[][])
      expect(filters.filter((filter) => filter.includes('"mirred"'))).toHaveLength(1);
    expect(result.iterations).toBe(3);
    // The floor is part of the attach, and every figure is a measured duration.
    expect(result.floor_us).toBeGreaterThan(0);
    expect(result.attach_us).toBeGreaterThanOrEqual(result.floor_us);
    for (const kind of ['tunOpen', 'tunIoctl', 'tunClose', 'netnsSwitch', 'netlinkSend', 'netlinkRecv'])
      expect(result.syscalls_us[kind]).toBeGreaterThanOrEqual(0);
  });

  it('removes its namespace and program', async () => {
    const namespaces = () =>
      execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.startsWith('vcnet-bench-cref-'));
    const temporary = () => readdirSync(tmpdir()).filter((entry) => entry.startsWith('vcnet-c-attach-'));
    const before = { namespaces: namespaces(), temporary: temporary() };
    await runCAttachReference(2);
    expect({ namespaces: namespaces(), temporary: temporary() }).toEqual(before);
  });
});
