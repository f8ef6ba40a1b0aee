/**
 * Netlink reading cut into the smallest slices (the event-loop budget mocked to 0 ms: one datagram
 * per turn) still delivers every reply: a snapshot whose dumps end between slices sends what waited
 * behind each dump, and an attach and a detach complete as usual.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { attachSandbox } from '../../src/sandbox/attach.js';
import { detachSandbox } from '../../src/sandbox/detach.js';
import { cleanupNamespaces, makeNamespace } from '../helpers/namespace.js';
import { fingerprint, makePod, tcfilterConfig } from '../helpers/pod.js';

vi.mock('../../src/event-loop.js', async (original) => ({
  ...(await original<typeof import('../../src/event-loop.js')>()),
  EVENT_LOOP_SLICE_MS: 0,
}));

afterEach(() => cleanupNamespaces());

it('a snapshot read one datagram per turn has every part, whole', async () => {
  const namespace = makeNamespace('sliced');
  const work = mkdtempSync(join(tmpdir(), 'vcnet-sliced-'));
  try {
    const batch = join(work, 'links.batch');
    writeFileSync(batch, Array.from({ length: 100 }, (_, i) => `link add s${i} type veth peer name q${i}\n`).join(''));
    execFileSync('ip', ['-n', namespace.name, '-batch', batch]);
    for (let i = 0; i < 20; i++) namespace.exec('ip', ['addr', 'add', `10.66.${i}.1/24`, 'dev', `s${i}`]);
    const handle = NetlinkHandle.open(namespace.path);
    try {
      const snapshot = await handle.snapshot();
      expect(snapshot.links).toHaveLength(201);
      expect(snapshot.addresses.filter((address) => address.address?.startsWith('10.66.'))).toHaveLength(20);
    } finally {
      handle.close();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

it('attach and detach of two endpoints complete with the smallest slices', async () => {
  const { pod } = makePod({ interfaces: 2 });
  const before = fingerprint(pod);
  const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-sliced-state-'));
  try {
    const result = await attachSandbox('sliced', tcfilterConfig(pod), { stateDirectory });
    expect(result.endpoints).toHaveLength(2);
    await detachSandbox('sliced', { stateDirectory });
    expect(fingerprint(pod)).toEqual(before);
  } finally {
    rmSync(stateDirectory, { recursive: true, force: true });
  }
});
