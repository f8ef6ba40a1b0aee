/** The macvtap index and device-node checks against a fake /proc, /sys and /dev tree (no root). */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LinkSpec } from '../../../src/netlink/codec/link.js';
import type { NetlinkHandle } from '../../../src/netlink/handle.js';
import {
  createMacvtapAtUniqueIndex,
  type DeviceRoots,
  deviceNumbers,
  MACVTAP_INDEX_BASE,
  macvtapDevicesAtIndex,
  macvtapMajor,
  macvtapNodeProblem,
  randomMacvtapIndex,
} from '../../../src/network/plan/macvtap-index.js';
import { LinkNameTakenError, VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';

let root: string;
let roots: DeviceRoots;

function addSysfsDevice(minor: number, index: number, name = 'mt0'): void {
  symlinkSync(
    `../../devices/virtual/net/${name}/macvtap/tap${index}`,
    join(roots.sysfs, 'dev', 'char', `246:${minor}`),
  );
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'vcnet-macvtap-roots-'));
  roots = { devices: join(root, 'dev'), sysfs: join(root, 'sys'), proc: join(root, 'proc') };
  for (const directory of [roots.devices, join(roots.sysfs, 'dev', 'char'), roots.proc])
    mkdirSync(directory, { recursive: true });
  writeFileSync(
    join(roots.proc, 'devices'),
    'Character devices:\n  1 mem\n 10 misc\n246 macvtap\n247 tap\n\nBlock devices:\n  7 loop\n246 macvtap-not-a-char\n',
  );
  symlinkSync('../../devices/virtual/misc/tun', join(roots.sysfs, 'dev', 'char', '10:200'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('macvtap index (Kata: 8192 + random & 0xFFFF)', () => {
  it('picks indexes in Kata range', () => {
    expect(randomMacvtapIndex(() => 0)).toBe(MACVTAP_INDEX_BASE);
    expect(randomMacvtapIndex(() => 0xffff)).toBe(MACVTAP_INDEX_BASE + 0xffff);
  });

  it('reads the macvtap major from the character section of /proc/devices', () => {
    expect(macvtapMajor(roots)).toBe(246);
    writeFileSync(join(roots.proc, 'devices'), 'Character devices:\n  1 mem\n');
    expect(() => macvtapMajor(roots)).toThrow(/no macvtap character devices.*/);
  });

  it('finds every macvtap named tap<index> in any namespace, and decodes dev_t as glibc does', () => {
    addSysfsDevice(1, 9001);
    addSysfsDevice(2, 9001, 'other');
    addSysfsDevice(3, 9002);
    expect(macvtapDevicesAtIndex(9001, 246, roots).map((device) => device.minor)).toEqual([1, 2]);
    expect(macvtapNodeProblem(9001, roots).problem).toMatch(/2 macvtaps in different namespaces are named tap9001/);
    expect(macvtapNodeProblem(9002, roots).problem).toMatch(/tap9002 does not exist/);
    expect(macvtapNodeProblem(9003, roots).problem).toMatch(/no macvtap character device is named tap9003/);
    expect(deviceNumbers(246 * 256 + 3)).toEqual({ major: 246, minor: 3 });
    // glibc's makedev for a major and minor that need the high bits.
    const [major, minor] = [5000n, 300_000n];
    const dev = (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
    expect(deviceNumbers(Number(dev))).toEqual({ major: 5000, minor: 300_000 });
  });

  it('retries on EEXIST, passes over taken indexes, and never hands out a node that is not the macvtap own', async () => {
    const tried: number[] = [];
    const deleted: number[] = [];
    let minor = 10;
    const handle = {
      addLink: async (spec: LinkSpec) => {
        tried.push(spec.index ?? -1);
        if (tried.length === 1) throw Object.assign(new Error('in use'), { errno: 'EEXIST' });
        addSysfsDevice(minor++, spec.index ?? -1); // made, but /dev has no node for it
      },
      findLink: async () => undefined,
      deleteLink: async (index: number) => {
        deleted.push(index);
      },
    } as unknown as NetlinkHandle;
    addSysfsDevice(5, MACVTAP_INDEX_BASE + 7); // another pod's
    const picks = [7, 1, 2, 3];
    await expect(
      createMacvtapAtUniqueIndex(
        handle,
        { name: 'tap0_kata', data: { kind: 'macvtap' } },
        {
          roots,
          random: () => picks.shift() ?? 0,
          attempts: 4,
        },
      ),
    ).rejects.toThrow(/no index for macvtap tap0_kata gave it a device node of its own after 4 tries/);
    expect(tried).toEqual([MACVTAP_INDEX_BASE + 1, MACVTAP_INDEX_BASE + 2, MACVTAP_INDEX_BASE + 3]);
    expect(deleted).toEqual([MACVTAP_INDEX_BASE + 2, MACVTAP_INDEX_BASE + 3]);
  });

  it('stops at once when the name, not the index, is taken', async () => {
    const handle = {
      addLink: async () => {
        throw Object.assign(new Error('File exists'), { errno: 'EEXIST' });
      },
      findLink: async () => ({ name: 'tap0_kata', index: 7, kind: 'macvtap', group: VCNET_LINK_GROUP }),
    } as unknown as NetlinkHandle;
    // Another sandbox's live macvtap (made meanwhile): named as taken, never "remove it first".
    const refusal = createMacvtapAtUniqueIndex(handle, { name: 'tap0_kata', data: { kind: 'macvtap' } }, { roots });
    await expect(refusal).rejects.toBeInstanceOf(LinkNameTakenError);
    await expect(refusal).rejects.toMatchObject({
      code: 'VCNET_LINK_NAME_TAKEN',
      message: expect.stringContaining("(index 7, macvtap, in vcnet's link group)"),
      cause: expect.objectContaining({ message: 'File exists' }),
    });
  });
});
