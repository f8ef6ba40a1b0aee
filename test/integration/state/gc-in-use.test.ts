/**
 * gc never removes a tap a process holds open, even when no record it can see claims it (a VM
 * attached with another registry, a wiped /run): the kernel says so (the tap's carrier is on while a
 * queue is attached; a multi-queue tap also counts its fds). Once the holder exits, gc removes it.
 * The holder is a small Python program doing what QEMU does: open /dev/net/tun, TUNSETIFF by name.
 * A macvtap is held through its character device, which a runtime may open by a node of its own (a
 * container's /dev, a mknod): the test opens it through a node it makes in a temporary directory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';

const VCNET_GROUP = '30307';
const stateDirectory = stateDirectoryPerTest('vcnet-gc-in-use-');
const holders: ChildProcess[] = [];
const scratch: string[] = [];
afterEach(() => {
  for (const holder of holders.splice(0)) holder.kill('SIGKILL');
  for (const directory of scratch.splice(0)) rmSync(directory, { recursive: true, force: true });
});

const HOLDER = `
import fcntl, os, struct, sys, time
fd = os.open('/dev/net/tun', os.O_RDWR)
flags = 0x0002 | 0x1000  # IFF_TAP | IFF_NO_PI
if sys.argv[2] == 'multi': flags |= 0x0100  # IFF_MULTI_QUEUE
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), flags))  # TUNSETIFF
print('held', flush=True)
time.sleep(300)
`;
const python = spawnSync('python3', ['-c', 'pass']).status === 0;
if (!python) console.log('skip gc of a held tap: no python3 to hold the tap open (TUNSETIFF)');

/** Holds `tap` (in `namespace`) open until killed, as QEMU holds a VM's tap. */
async function hold(namespace: TestNamespace, tap: string, multiQueue: boolean): Promise<ChildProcess> {
  const holder = spawn(
    'ip',
    ['netns', 'exec', namespace.name, 'python3', '-c', HOLDER, tap, multiQueue ? 'multi' : 'single'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  holders.push(holder);
  await new Promise<void>((resolve, reject) => {
    holder.stdout?.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`the holder of ${tap} exited (${code})`)));
  });
  return holder;
}

interface GcReport {
  removed: Array<{ kind: string; name: string }>;
  inUse: Array<{ namespacePath: string; name: string; detail: string }>;
}

/** gc scoped to this test's namespace and state directory, with an empty registry of its own. */
function gc(namespace: TestNamespace, json = true): { status: number; stdout: string; stderr: string } {
  return vcnet(['gc', '--netns', namespace.path, '--state-dir', stateDirectory(), ...(json ? ['--json'] : [])], {
    VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry'),
  });
}

describe.skipIf(!python)('vcnet gc and taps a process holds open', () => {
  it('keeps a held tap no record claims, says so, and removes it once its holder exits', async () => {
    const pod = makeNamespace('gcuse');
    for (const [tap, extra] of [
      ['tap0_kata', []],
      ['tap1_kata', ['multi_queue']],
    ] as const) {
      pod.exec('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', ...extra]);
      pod.exec('ip', ['link', 'set', tap, 'group', VCNET_GROUP]);
    }
    // Down: the carrier says whether an fd is attached whatever the link's up/down state.
    pod.exec('ip', ['link', 'set', 'tap1_kata', 'up']);
    const single = await hold(pod, 'tap0_kata', false);
    const multi = await hold(pod, 'tap1_kata', true);

    const kept = gc(pod);
    expect(kept.status, kept.stderr).toBe(0);
    const report = JSON.parse(kept.stdout) as GcReport;
    expect(report.removed).toEqual([]);
    expect(report.inUse).toEqual([
      { namespacePath: pod.path, name: 'tap0_kata', detail: 'in use by a process (fd open: carrier on), kept' },
      { namespacePath: pod.path, name: 'tap1_kata', detail: 'in use by a process (fd open: 1 queue(s)), kept' },
    ]);
    const human = gc(pod, false);
    expect(human.stdout).toContain(`kept tap0_kata in ${pod.path}: in use by a process (fd open: carrier on), kept`);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toEqual(
      expect.arrayContaining(['tap0_kata', 'tap1_kata']),
    );

    for (const holder of [single, multi]) {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    const collected = JSON.parse(gc(pod).stdout) as GcReport;
    expect(collected.inUse).toEqual([]);
    expect(collected.removed.map((item) => item.name).sort()).toEqual(['tap0_kata', 'tap1_kata']);
    expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).toEqual(['lo']);
  });
});

const NODE_HOLDER = `
import os, time, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print('held', flush=True)
time.sleep(300)
`;

/** major:minor of the macvtap character device named tap<index>, from /sys/dev/char (host-wide). */
function macvtapDeviceNumbers(index: number): string {
  const found = readdirSync('/sys/dev/char').filter(
    (entry) => basename(readlinkSync(join('/sys/dev/char', entry))) === `tap${index}`,
  );
  expect(found, `character devices named tap${index}`).toHaveLength(1);
  return found[0] as string;
}

describe.skipIf(!python)('vcnet gc and a macvtap a process holds open', () => {
  it('keeps a macvtap whose device is open through a node outside /dev, and removes it once closed', async () => {
    const pod = makeNamespace('gcmvt');
    pod.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
    // A high index as vcnet and Kata give macvtaps, so no other namespace's tap<index> is in the way.
    const index = 40_000 + Math.floor(Math.random() * 20_000);
    pod.exec('ip', ['link', 'add', 'link', 'eth0', 'name', 'mvt0', 'index', String(index), 'type', 'macvtap']);
    pod.exec('ip', ['link', 'set', 'mvt0', 'group', VCNET_GROUP]);
    const [major, minor] = macvtapDeviceNumbers(index).split(':') as [string, string];
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-gc-macvtap-'));
    scratch.push(directory);
    const node = join(directory, 'vm-tap');
    expect(spawnSync('mknod', [node, 'c', major, minor]).status).toBe(0);

    const holder = spawn('python3', ['-c', NODE_HOLDER, node], { stdio: ['ignore', 'pipe', 'pipe'] });
    holders.push(holder);
    await new Promise<void>((resolve, reject) => {
      holder.stdout?.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`the holder of ${node} exited (${code})`)));
    });

    const kept = gc(pod);
    expect(kept.status, kept.stderr).toBe(0);
    const report = JSON.parse(kept.stdout) as GcReport;
    expect(report.removed).toEqual([]);
    expect(report.inUse).toEqual([
      {
        namespacePath: pod.path,
        name: 'mvt0',
        detail: `in use by a process (fd open on ${major}:${minor} (${node})), kept`,
      },
    ]);

    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    const collected = JSON.parse(gc(pod).stdout) as GcReport;
    expect(collected.inUse).toEqual([]);
    expect(collected.removed.map((item) => item.name)).toEqual(['mvt0']);
    expect(
      pod
        .ipJson<Array<{ ifname: string }>>('link', 'show')
        .map((link) => link.ifname)
        .sort(),
    ).toEqual(['eth0', 'eth0p', 'lo']);
  });
});
