/**
 * A removal the kernel refuses because the object is gone already (a detach, a pod torn down, a hand
 * took it between gc's look and its request) is not a failure of gc: what gc wanted is done. gc beside
 * detaches reported "delete qdisc ffff: ... EINVAL Invalid handle" and "delete orphan tap0_kata
 * failed: ENODEV", and `vcnet gc` exited 1 for them. The kernel's own answers are used here: gc's
 * seam before its second batch (the emptied ingress qdiscs) takes the qdisc, or the whole pod link.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { setGcIngressTestHook } from '../../../src/network/gc/orphan-links.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../../helpers/pod.js';

let stateDir: string;

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-gc-gone-'));
});

afterEach(() => {
  setGcIngressTestHook(undefined);
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

it.each([
  ['its ingress qdisc', ['tc', 'qdisc del dev eth0 ingress']],
  ['the pod link itself', ['ip', 'link del eth0']],
])('counts an emptied ingress qdisc gone meanwhile (%s) as gone, not as a failure', async (_, [tool, command]) => {
  const { pod } = makePod();
  await attachSandbox('gone', tcfilterConfig(pod), { stateDirectory: stateDir });
  rmSync(join(stateDir, 'gone'), { recursive: true }); // the record is lost: the tap is an orphan
  let hooked = 0;
  setGcIngressTestHook(() => {
    hooked++;
    pod.exec(tool!, command!.split(' '));
  });
  const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
  expect(hooked).toBe(1);
  expect(report.failures).toEqual([]);
  // What gc removed itself, and not the qdisc another hand took.
  const removed = report.removed.filter((item) => item.kind !== 'state');
  expect(removed.map((item) => `${item.kind} ${item.name}`).sort()).toEqual(['filter eth0', 'link tap0_kata']);
  expect(pod.tcJson<Array<{ kind: string }>>('qdisc', 'show').map((qdisc) => qdisc.kind)).not.toContain('ingress');
});
