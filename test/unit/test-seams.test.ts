/**
 * The test seams (src/test-seams.ts) are kept on globalThis under fixed `Symbol.for` names: a crash
 * test preloads dist/ into a bundled `vcnet` and sets a hook the bundle's own copy of the module must
 * see, so each setter writes there, each caller reads there, and the names do not change.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { setUnplugWaitTestHook } from '../../src/hypervisor/qmp-network-hotplug.js';
import { setNetlinkRepliesTestHook } from '../../src/netlink/transport.js';
import { setFdWalkTestHook } from '../../src/netns/mountinfo.js';
import { setGcFirstLookTestHook } from '../../src/network/garbage-collector.js';
import { setGcDropTestHook } from '../../src/network/gc/gone-records.js';
import { setGcIngressTestHook } from '../../src/network/gc/orphan-links.js';
import { setApplyTestHook } from '../../src/network/plan/apply.js';
import { LINK_INDEX_BASE, randomLinkIndex, setLinkIndexTestHook } from '../../src/network/plan/link-creation.js';
import {
  AGENT_CONNECT_TIMEOUT_MS,
  agentConnectWaitMs,
  setAgentConnectWaitTestHook,
} from '../../src/sandbox/hypervisor-connection.js';
import { setWatchVmPollTestHook } from '../../src/sandbox/sandbox-watch.js';
import { setTrafficControlRetryTestHook } from '../../src/sandbox/tc-repair-retry.js';
import { TEST_SEAM_NAMES, testSeam, waitThroughSeam } from '../../src/test-seams.js';

const holder = globalThis as Record<symbol, unknown>;

afterEach(() => {
  for (const name of Object.values(TEST_SEAM_NAMES)) delete holder[Symbol.for(name)];
});

describe('test seams', () => {
  it('keep their names (a preloaded dist/ and a bundle of vcnet meet by them)', () => {
    expect(TEST_SEAM_NAMES).toEqual({
      applyStep: 'vcnet.applyTestHook',
      netlinkReplies: 'vcnet.netlinkRepliesTestHook',
      linkIndex: 'vcnet.linkIndexTestHook',
      gcIngress: 'vcnet.gcIngressTestHook',
      gcFirstLook: 'vcnet.gcFirstLookTestHook',
      gcDrop: 'vcnet.gcDropTestHook',
      fdWalk: 'vcnet.namespaceHoldersFdWalkTestHook',
      trafficControlRetry: 'vcnet.trafficControlRetryTestHook',
      unplugWait: 'vcnet.unplugWaitTestHook',
      agentConnectWait: 'vcnet.agentConnectWaitTestHook',
      watchVmPoll: 'vcnet.watchVmPollTestHook',
    });
  });

  it.each([
    ['vcnet.applyTestHook', setApplyTestHook],
    ['vcnet.netlinkRepliesTestHook', setNetlinkRepliesTestHook],
    ['vcnet.linkIndexTestHook', setLinkIndexTestHook],
    ['vcnet.gcIngressTestHook', setGcIngressTestHook],
    ['vcnet.gcFirstLookTestHook', setGcFirstLookTestHook],
    ['vcnet.gcDropTestHook', setGcDropTestHook],
    ['vcnet.namespaceHoldersFdWalkTestHook', setFdWalkTestHook],
    ['vcnet.trafficControlRetryTestHook', setTrafficControlRetryTestHook],
    ['vcnet.unplugWaitTestHook', setUnplugWaitTestHook],
    ['vcnet.agentConnectWaitTestHook', setAgentConnectWaitTestHook],
    ['vcnet.watchVmPollTestHook', setWatchVmPollTestHook],
  ] as const)('%s: the setter puts the hook on globalThis and takes it away again', (name, set) => {
    const hook = () => undefined;
    (set as (hook: (() => undefined) | undefined) => void)(hook);
    expect(holder[Symbol.for(name)]).toBe(hook);
    (set as (hook: undefined) => void)(undefined);
    expect(Object.hasOwn(globalThis, Symbol.for(name))).toBe(false);
  });

  it('a hook another copy of vcnet put on globalThis is the one called', () => {
    holder[Symbol.for('vcnet.linkIndexTestHook')] = () => LINK_INDEX_BASE + 7;
    expect(randomLinkIndex(() => 0)).toBe(LINK_INDEX_BASE + 7);
    expect(testSeam<() => number>('linkIndex').hook()?.()).toBe(LINK_INDEX_BASE + 7);
    testSeam('linkIndex').set(undefined);
    expect(randomLinkIndex(() => 0)).toBe(LINK_INDEX_BASE);
  });

  it("a wait is the product's with no hook, and the hook's (given the product's) with one", () => {
    const seam = testSeam<(productMs: number) => number>('unplugWait');
    expect(waitThroughSeam(seam, 10_000)).toBe(10_000);
    seam.set((productMs) => productMs / 20);
    expect(waitThroughSeam(seam, 10_000)).toBe(500);
    expect(agentConnectWaitMs()).toBe(AGENT_CONNECT_TIMEOUT_MS);
    holder[Symbol.for('vcnet.agentConnectWaitTestHook')] = () => 700;
    expect(agentConnectWaitMs()).toBe(700);
  });
});
