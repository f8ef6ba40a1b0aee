/**
 * gc deletes the ingress qdisc tcfilter's attach added only once vcnet's redirects are gone and the
 * qdisc, listed again then, has no filter: a filter another tool adds between gc's first listing and
 * the removal of the redirects stays, and so does its qdisc (both went in one batch before).
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
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-gc-ingress-'));
});

afterEach(() => {
  setGcIngressTestHook(undefined);
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

it("keeps the ingress qdisc when another tool's filter is on it once vcnet's redirects are gone", async () => {
  const { pod } = makePod();
  await attachSandbox('race', tcfilterConfig(pod), { stateDirectory: stateDir });
  rmSync(join(stateDir, 'race'), { recursive: true }); // the record is lost: the tap is an orphan
  let hooked = 0;
  setGcIngressTestHook(() => {
    hooked++;
    pod.exec('tc', 'filter add dev eth0 ingress prio 7 protocol ip u32 match u32 0 0 classid 1:1'.split(' '));
  });
  const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
  expect(hooked).toBe(1);
  expect(report.failures).toEqual([]);
  const removed = report.removed.filter((item) => item.kind !== 'state');
  expect(removed.map((item) => `${item.kind} ${item.name}`).sort()).toEqual(['filter eth0', 'link tap0_kata']);
  expect(report.leftAlone, JSON.stringify(report.leftAlone)).toContainEqual(
    expect.objectContaining({
      kind: 'qdisc',
      name: 'eth0',
      detail: expect.stringContaining('filters at 1 priority(ies) on it'),
    }),
  );
  const filters = pod.tcJson<Array<{ pref: number }>>('filter', 'show', 'dev', 'eth0', 'ingress');
  expect(filters.map((filter) => filter.pref)).toContain(7);
  expect(pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain('tap0_kata');
});
