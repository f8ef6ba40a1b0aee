/**
 * vcnet-cni ADD whose netlink answers are lost after the kernel ran the batch (the transport's test
 * seam, preloaded: test/helpers/fault-preload.mjs). The plugin undoes everything the batch may have
 * made and says so only when it is gone; when its undo loses its answers too, the record keeps all
 * of it and the runtime's DEL removes it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loseAnswersAt, stateDirectoryPerTest } from '../../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../../helpers/cni.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-cni-lost-');
const CONTAINER = 'ctr-lost';

afterEach(() => {
  cleanupNamespaces();
});

type Pod = ReturnType<typeof makePod>['pod'];

function runPlugin(command: string, pod: Pod, env: Record<string, string> = {}) {
  const plugin = vcnetCniOverPod({
    name: 'vcnet-lost',
    pod,
    containerId: CONTAINER,
    stateDir: join(stateDirectory(), 'cni'),
    registry: join(stateDirectory(), 'registry'),
  });
  return spawnSync(process.execPath, [VCNET_CNI_PROGRAM], {
    input: plugin.config,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...plugin.environment(command), ...env },
  });
}

/** The records under the plugin's state directory (lock files aside). */
function records(): string[] {
  const root = join(stateDirectory(), 'cni');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((name) => name.endsWith('.json')).sort();
}

describe('vcnet-cni ADD whose answers are lost', () => {
  it('undoes the whole batch, says so, and leaves no record', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const add = runPlugin('ADD', pod, loseAnswersAt(1));
    expect(add.status, add.stderr).not.toBe(0);
    const reply = JSON.parse(add.stdout) as { code: number; msg: string; details: string };
    expect(reply.msg).toContain('ENOBUFS');
    expect(reply.msg).toContain('everything it had made was removed');
    expect(fingerprint(pod)).toEqual(before);
    expect(records()).toEqual([]);
    expect(runPlugin('DEL', pod).status).toBe(0);
  });

  it('whose undo loses its answers too: code 103, the record keeps it all, and DEL removes it', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const add = runPlugin('ADD', pod, loseAnswersAt(1, true));
    expect(add.status, add.stderr).not.toBe(0);
    const reply = JSON.parse(add.stdout) as { code: number; msg: string; details: string };
    expect(reply.code).toBe(103);
    expect(reply.msg).not.toContain('everything it had made was removed');
    expect(records()).not.toEqual([]);
    const del = runPlugin('DEL', pod);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    expect(records()).toEqual([]);
  });
});

describe("vcnet-cni ADD refused by another tool's shared ingress block, whose undo loses its answers", () => {
  it('answers 103 with what is left in msg, and both the DEL that finishes it and the shared-block remedy in details', () => {
    const { pod } = makePod();
    pod.exec('tc', 'qdisc add dev eth0 ingress_block 7 ingress'.split(' '));
    const before = fingerprint(pod);
    // The second send carrying a change is the undo's (the first, the tap's settings and both
    // filters, is refused at the filter on eth0): its answers and every look after it are lost.
    const add = runPlugin('ADD', pod, loseAnswersAt(2, true));
    expect(add.status, add.stderr).not.toBe(0);
    const reply = JSON.parse(add.stdout) as { code: number; msg: string; details: string };
    expect(reply.code).toBe(103);
    expect(reply.msg).toContain('This filter block is shared');
    expect(reply.msg).toContain('tun tap0_kata');
    expect(reply.details).toMatch(/^VCNET_ROLLBACK_INCOMPLETE: /);
    expect(reply.details).toContain("the runtime's DEL of this container and interface removes it");
    expect(reply.details).toContain('use the macvtap model, which adds no filter to the pod link');
    expect(records()).not.toEqual([]);
    const del = runPlugin('DEL', pod);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
    expect(records()).toEqual([]);
  });
});
