/**
 * Faults during attach, through the executor's test seam (setApplyTestHook, never set in production):
 * a fault at each step of attach, for every model (with rate limits, so the ifb and htb steps are
 * included), leaves the namespace exactly as it was and no record. When the undo of such a fault is
 * refused by the kernel too, the error says so (VCNET_ROLLBACK_INCOMPLETE) naming what is left, the
 * record keeps exactly that, and `vcnet gc` (collectGarbage) finishes the job. Another tool's u32
 * node that joined vcnet's redirect before the fault stays: the rollback deletes vcnet's node alone.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { NetlinkHandle } from '../../../src/netlink/handle.js';
import { isGetRequest } from '../../../src/netlink/protocol.js';
import { setNetlinkRepliesTestHook } from '../../../src/netlink/transport.js';
import type { NetworkConfig } from '../../../src/network/config.js';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import type { InterworkingModel } from '../../../src/network/interworking-model.js';
import { attachByPlan } from '../../../src/network/model/plumbing-context.js';
import { Network } from '../../../src/network/network.js';
import { setApplyTestHook } from '../../../src/network/plan/apply.js';
import { LinkNameTakenError } from '../../../src/network/plan/plan-attach.js';
import type { PlanStep } from '../../../src/network/plan/types.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { attachRecorded } from '../../../src/sandbox/recorded.js';
import { addInterface } from '../../../src/sandbox/sandbox-interfaces.js';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { addPodMacvtap } from '../../helpers/dry-run-cases.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod, type PodOptions, podConfig } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

let stateDir: string;

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-faults-'));
});

afterEach(() => {
  setApplyTestHook(undefined);
  setNetlinkRepliesTestHook(undefined);
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

// disable_new_netns scans nothing (only hot-added taps): the none model is exercised without it.
const config = (pod: TestNamespace, model: InterworkingModel): NetworkConfig =>
  podConfig(pod, model, { rateLimit: { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 } });

/**
 * What attachSandbox(`sandbox`, `network`) failed with, `hook` seeing each step it sent (the executor's
 * test seam, taken off again); an Error saying so if the attach succeeded.
 */
async function attachFailure(
  sandbox: string,
  network: NetworkConfig,
  hook: Parameters<typeof setApplyTestHook>[0],
): Promise<Error & { code?: string; left?: unknown[] }> {
  setApplyTestHook(hook);
  try {
    return (await attachSandbox(sandbox, network, { stateDirectory: stateDir }).then(
      () => new Error('attach succeeded'),
      (caught: unknown) => caught,
    )) as Error & { code?: string; left?: unknown[] };
  } finally {
    setApplyTestHook(undefined);
  }
}

/**
 * The other tool's filter (and so the ingress qdisc it sits in) on `link` is all the failed attach
 * left, its own redirects gone: with that qdisc deleted, the pod is as `before`.
 */
function expectOnlyOthersFilterLeft(pod: TestNamespace, link: string, before: ReturnType<typeof fingerprint>): void {
  const filters = pod.exec('tc', `filter show dev ${link} ingress`.split(' '));
  expect(filters).toContain('match 0a090909/ffffffff at 16');
  expect(filters).not.toContain('Redirect');
  pod.exec('tc', `qdisc del dev ${link} ingress`.split(' '));
  expect(fingerprint(pod)).toEqual(before);
}

/** What `work` did, with the notices published on vcnet:notice meanwhile. */
async function withNotices<Result>(work: () => Promise<Result>): Promise<{ result: Result; notices: NoticeEvent[] }> {
  const notices: NoticeEvent[] = [];
  const listener = (message: unknown) => notices.push(message as NoticeEvent);
  channels.notice.subscribe(listener);
  try {
    return { result: await work(), notices };
  } finally {
    channels.notice.unsubscribe(listener);
  }
}

/** The steps attach sends for a two-interface pod (recorded by a hook that lets them all pass). */
async function stepsOf(model: InterworkingModel, podOptions: PodOptions = {}): Promise<PlanStep[]> {
  const { pod } = makePod({ interfaces: 2, ...podOptions });
  const steps: PlanStep[] = [];
  setApplyTestHook((step) => {
    steps.push(step);
  });
  await attachSandbox('count', config(pod, model), { stateDirectory: stateDir });
  setApplyTestHook(undefined);
  await detachSandbox('count', { stateDirectory: stateDir });
  pod.delete();
  return steps;
}

/** A fault at each step of both endpoints (when the second fails, the complete first must go too). */
async function faultAtEveryStep(model: InterworkingModel, podOptions: PodOptions = {}): Promise<void> {
  const steps = await stepsOf(model, podOptions);
  expect(steps.length).toBeGreaterThan(5);
  const { pod } = makePod({ interfaces: 2, ...podOptions });
  const before = fingerprint(pod);
  for (let failAt = 0; failAt < steps.length; failAt++) {
    let position = -1;
    const error = await attachFailure('faulty', config(pod, model), (step) => {
      position++;
      if (position === failAt) throw new Error(`injected fault at ${step.change.op}`);
    });
    expect(error, `fault at step ${failAt}`).toBeInstanceOf(Error);
    expect(error.code, `${failAt}: ${error.message}`).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).toContain('injected fault');
    expect(error.message).toContain('everything it had made was removed');
    expect(readSandbox('faulty', stateDir), `record after fault at step ${failAt}`).toBeUndefined();
    const change = steps[failAt]?.change;
    expect(
      fingerprint(pod),
      `namespace after fault at step ${failAt} (${change?.op} on ${change && 'link' in change ? change.link.name : ''})`,
    ).toEqual(before);
  }
}

describe('a fault at each step of attach leaves nothing', () => {
  for (const model of ['tcfilter', 'macvtap', 'none'] as const) {
    it(`${model} (with rx and tx limits): every step`, async () => {
      await faultAtEveryStep(model);
    });
  }

  // CNI's bridge and ptp plugins make the pod veth with txqueuelen 0; the kernel gives it 1000 with
  // vcnet's ingress qdisc (and its htb): a fault after that qdisc must leave 0 again, not 1000.
  it('tcfilter (with rx and tx limits) on pod veths without a transmit queue (txqueuelen 0): every step', async () => {
    await faultAtEveryStep('tcfilter', { txQueueLength: 0 });
  });
});

describe('a refused undo', () => {
  it('keeps a record of exactly what is left, says so, and gc finishes the job', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    // macvtap removes eth0's addresses; with IPv6 disabled on eth0 the kernel refuses to put
    // fd00:200::2 back (EACCES), so the undo of the fault cannot complete.
    const error = await attachFailure('stuck', { ...config(pod, 'macvtap'), rateLimit: {} }, (step) => {
      // The macvtap coming up is the last step: the pod link's addresses are gone by then.
      if (step.change.op === 'set-link' && step.change.link.role === 'macvtap' && step.change.set.up === true) {
        pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
        throw new Error('injected fault after the addresses were removed');
      }
    });
    expect(error.code).toBe('VCNET_ROLLBACK_INCOMPLETE');
    expect(error.message).toContain('injected fault');
    expect(error.message).toContain('addresses removed from eth0 (fd00:200::2/64)');
    expect(error.message).not.toContain('everything it had made was removed');
    // The record keeps exactly what is left.
    const record = readSandbox('stuck', stateDir);
    expect(record?.network.endpoints.map((endpoint) => endpoint.plumbing?.model)).toEqual(['pending']);
    expect(record?.network.endpoints[0]?.plumbing?.steps).toEqual(error.left);
    // IPv6 is off on eth0, so neither IPv6 address could go back: the global one and the link-local.
    expect(error.left).toEqual([
      {
        step: 'remove-addresses',
        link: 'eth0',
        index: expect.any(Number), // the pod link's ifindex: its identity on detach
        addresses: [expect.objectContaining({ address: 'fd00:200::2', prefixLength: 64 })],
      },
      {
        step: 'remove-addresses',
        link: 'eth0',
        index: expect.any(Number),
        addresses: [expect.objectContaining({ address: expect.stringMatching(/^fe80::/), prefixLength: 64 })],
      },
    ]);

    // The cause goes away; gc finishes what the failed attach left, and drops the record.
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
    const collected = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(collected.removed.map((item) => item.detail)).toEqual([
      expect.stringMatching(
        /^unfinished attach of eth0: addresses removed from eth0 \(fd00:200::2\/64\), addresses removed from eth0 \(fe80::[0-9a-f:]+\/64\)$/,
      ),
    ]);
    expect(readSandbox('stuck', stateDir)).toBeUndefined();
    expect(fingerprint(pod)).toEqual(before);
  });

  it('undoes a link it made and someone renamed before the undo (found by ifindex), and says so only then', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const error = await attachFailure('renamed', { ...config(pod, 'tcfilter'), rateLimit: {} }, (step) => {
      // After the tap is made and up: someone renames it, then the attach fails.
      if (step.change.op === 'add-qdisc' && step.change.link.role === 'tap') {
        pod.exec('ip', ['link', 'set', 'tap0_kata', 'down']);
        pod.exec('ip', ['link', 'set', 'tap0_kata', 'name', 's13fe-ren']);
        throw new Error('injected fault after a rename');
      }
    });
    // The undo deletes the tap by the ifindex it got (a delete by name would have missed it and taken
    // ENODEV for "gone"); after the undo every link made is looked up again by ifindex, so "everything
    // it had made was removed" is said because it is true.
    expect(error.code).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).toContain('everything it had made was removed');
    expect(readSandbox('renamed', stateDir)).toBeUndefined();
    expect(fingerprint(pod)).toEqual(before);
  });

  it('names the earlier endpoint whose undo was refused, apart from the one that failed', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const error = await attachFailure('spanning', { ...config(pod, 'macvtap'), rateLimit: {} }, (step) => {
      // eth1's macvtap coming up: eth0 is attached (its addresses moved), and IPv6 off refuses them back.
      if (step.change.op === 'set-link' && step.change.link.name === 'tap1_kata' && step.change.set.up === true) {
        pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
        throw new Error('injected fault in the second endpoint');
      }
    });
    expect(error.code).toBe('VCNET_ROLLBACK_INCOMPLETE');
    expect(error.message).toMatch(
      /^attach failed: attaching eth1 failed: .*injected fault in the second endpoint.*; undoing the endpoint attached before it \(eth0\) failed too \(.*\): left addresses removed from eth0/,
    );
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(readSandbox('spanning', stateDir)).toBeUndefined();
  });

  it('detach after a partial detach finishes the job', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    await attachSandbox('partial', config(pod, 'macvtap'), { stateDirectory: stateDir });
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
    const error = (await detachSandbox('partial', { stateDirectory: stateDir }).then(
      () => new Error('detach succeeded'),
      (caught: unknown) => caught,
    )) as Error & { code?: string };
    expect(error.code).toBe('VCNET_DETACH_INCOMPLETE');
    expect(error.message).toContain('addresses removed from eth0 (fd00:200::2/64)');
    const left = readSandbox('partial', stateDir)?.network.endpoints[0]?.plumbing?.steps;
    // Both IPv6 addresses (the global one and, since the macvtap model takes it too, the link-local).
    expect(left?.map((step) => step.step)).toEqual(['remove-addresses', 'remove-addresses']);
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
    const again = await detachSandbox('partial', { stateDirectory: stateDir });
    expect(again.found).toBe(true);
    expect(readSandbox('partial', stateDir)).toBeUndefined();
    expect(fingerprint(pod)).toEqual(before);
  });

  it('a record whose namespace is gone is dropped by detach, which says so', async () => {
    const { pod } = makePod();
    await attachSandbox('orphan', config(pod, 'tcfilter'), { stateDirectory: stateDir });
    pod.delete();
    const result = await detachSandbox('orphan', { stateDirectory: stateDir });
    expect(result).toMatchObject({ found: true, namespaceGone: pod.path });
    expect(readSandbox('orphan', stateDir)).toBeUndefined();
  });

  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: a detach whose batch was sent but whose record stayed (kill -9 then) converges when run again`, async () => {
      const { pod } = makePod({ interfaces: 2 });
      const before = fingerprint(pod);
      await attachSandbox('again', config(pod, model), { stateDirectory: stateDir });
      const record = readFileSync(join(stateDir, 'again', 'state.json'), 'utf8');
      await detachSandbox('again', { stateDirectory: stateDir });
      // As if the process died after the kernel took the undo batch and before the record went.
      mkdirSync(join(stateDir, 'again'), { recursive: true });
      writeFileSync(join(stateDir, 'again', 'state.json'), record);
      const again = await detachSandbox('again', { stateDirectory: stateDir });
      expect(again.report?.failures).toEqual([]);
      expect(readSandbox('again', stateDir)).toBeUndefined();
      expect(fingerprint(pod)).toEqual(before);
      // The id is free again.
      await attachSandbox('again', config(pod, model), { stateDirectory: stateDir });
      await detachSandbox('again', { stateDirectory: stateDir });
      expect(fingerprint(pod)).toEqual(before);
    });
  }
});

describe('a tap name the kernel says is taken', () => {
  it('is reported as such by the executor when the plan could not see it, and nothing is left', async () => {
    // A library caller that plans from the qdiscs alone (as `vcnet bench` does) does not know the
    // links: the kernel's EBUSY for IFF_TUN_EXCL is then the only sign, and it is named for what it is.
    const { pod } = makePod();
    pod.exec('ip', ['tuntap', 'add', 'dev', 'tap0_kata', 'mode', 'tap']);
    const before = fingerprint(pod);
    const handle = NetlinkHandle.open(pod.path);
    try {
      const source = await handle.linkByName('eth0');
      const context = {
        handle,
        namespacePath: pod.path,
        queues: 1,
        keepFds: false,
        vhostNet: 'off' as const,
        qdiscs: (await handle.snapshot(['qdiscs'])).qdiscs,
      };
      const request = { model: 'tcfilter', source, tapName: 'tap0_kata' } as const;
      const attempt = attachByPlan(context, request);
      await expect(attempt).rejects.toBeInstanceOf(LinkNameTakenError);
      await expect(attachByPlan(context, request)).rejects.toMatchObject({
        code: 'VCNET_LINK_NAME_TAKEN',
        value: 'tap0_kata',
        cause: expect.objectContaining({ code: 'EBUSY' }),
      });
    } finally {
      handle.close();
    }
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('a device configuration refused after the plumbing was made', () => {
  it('undoes the whole attach: the namespace as it was, no record, the refusal thrown', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const refusal = new Error('the VMM cannot take this NIC');
    let seen: string[] = [];
    const error = await attachSandbox('refused', config(pod, 'tcfilter'), {
      stateDirectory: stateDir,
      checkEndpoints: (endpoints) => {
        seen = endpoints.map((endpoint) => endpoint.plumbing?.tapName ?? '-');
        throw refusal;
      },
    }).catch((caught: unknown) => caught);
    expect(error).toBe(refusal);
    // It ran on the endpoints as made, taps and all.
    expect(seen).toEqual(['tap0_kata', 'tap1_kata']);
    expect(fingerprint(pod)).toEqual(before);
    expect(readSandbox('refused', stateDir)).toBeUndefined();
  });
});

describe("another tool's u32 node joining vcnet's redirect before attach fails", () => {
  it.each([
    ["vcnet's own ingress qdisc", false],
    ['an ingress qdisc the pod link had before attach', true],
  ])("the rollback deletes vcnet's node by its handle and leaves the other tool's, in %s", async (_where, hadQdisc) => {
    const { pod } = makePod();
    if (hadQdisc) pod.exec('tc', 'qdisc add dev eth0 ingress'.split(' '));
    const before = fingerprint(pod);
    let previous: PlanStep | undefined;
    const error = await attachFailure('joined', { ...config(pod, 'tcfilter'), rateLimit: {} }, (step) => {
      const last = previous;
      previous = step;
      // The step after vcnet's redirect on eth0 (the hook runs once the steps before it are sent).
      if (last?.change.op !== 'add-filter' || last.change.link.name !== 'eth0') return;
      // Same priority, protocol and kind: the kernel adds it as a second node of vcnet's u32 (800::801).
      pod.exec(
        'tc',
        'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
      );
      throw new Error("injected fault after another tool's node joined vcnet's u32");
    });
    expect(error.message).toContain("another tool's node joined");
    expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
    // vcnet's own ingress qdisc stays for the other tool's node, and the message says so.
    if (hadQdisc) expect(error.message).toContain('(everything it had made was removed)');
    else
      expect(error.message).toContain('everything it had made was removed but the ingress qdisc on eth0, which stays');
    expect(readSandbox('joined', stateDir)).toBeUndefined();
    const left = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    // A delete of the whole priority would take it along (checked: it does, with ownNodes ignored).
    expect(left).toContain('match 0a090909/ffffffff at 16');
    expect(left).not.toContain('Redirect');
    // Nothing else of the attach is left: without the other tool's node (and the qdisc it kept),
    // the namespace is as it was.
    pod.exec('tc', 'filter del dev eth0 ingress prio 49152'.split(' '));
    if (!hadQdisc) pod.exec('tc', 'qdisc del dev eth0 ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(before);
  });
});

/**
 * The undo loses what the kernel says from the send after the one carrying `step` on: the refusal of
 * that step is read, the rollback's look at the namespace and its batch are not (ENOBUFS), so nothing
 * of what it was to remove is known to be gone. Both seams are taken off in afterEach.
 */
function loseAnswersAfter(step: (planStep: PlanStep) => boolean): void {
  let armed = false;
  let refusalRead = false;
  setApplyTestHook((planStep) => {
    if (step(planStep)) armed = true;
  });
  setNetlinkRepliesTestHook(() => {
    if (!armed) return undefined;
    if (!refusalRead) {
      // With the executor's hook set, the step goes in a send of its own, the first after it is armed.
      refusalRead = true;
      return undefined;
    }
    return { errno: 'ENOBUFS' };
  });
}

describe("an attach refused by another tool's shared ingress block, whose undo fails too", () => {
  const sharedBlockRemedy = 'use the macvtap model, which adds no filter to the pod link';

  it('tcfilter: says what is left (its own code, the record kept for gc) and keeps the shared-block remedy', async () => {
    const { pod } = makePod();
    pod.exec('tc', 'qdisc add dev eth0 ingress_block 7 ingress'.split(' '));
    const before = fingerprint(pod);
    loseAnswersAfter((step) => step.change.op === 'add-filter' && step.change.link.name === 'eth0');
    const error = (await attachSandbox(
      'shared',
      { ...config(pod, 'tcfilter'), rateLimit: {} },
      { stateDirectory: stateDir },
    ).then(
      () => new Error('attach succeeded'),
      (caught: unknown) => caught,
    )) as Error & { code?: string; hint?: string; left?: unknown[] };
    setApplyTestHook(undefined);
    setNetlinkRepliesTestHook(undefined);
    expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
    expect(error.message).toContain('This filter block is shared');
    expect(error.message).toContain('tun tap0_kata');
    // What finishes what is left, and what to do about the refusal itself: both.
    expect(error.hint).toContain('`vcnet detach`');
    expect(error.hint).toContain(sharedBlockRemedy);
    expect(readSandbox('shared', stateDir)?.network.endpoints[0]?.plumbing?.steps).toEqual(error.left);
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(readSandbox('shared', stateDir)).toBeUndefined();
    expect(fingerprint(pod)).toEqual(before);
  });

  it("macvtap: the pod's own macvtap refused, the undo of the endpoint before it refused too, keeps that macvtap's remedy", async () => {
    const { pod } = makePod();
    addPodMacvtap(pod);
    pod.exec('tc', 'qdisc add dev mvt ingress_block 23 ingress'.split(' '));
    const before = fingerprint(pod);
    const error = await attachFailure('sharedmv', config(pod, 'macvtap'), (step) => {
      // mvt's rx limit, its ifb redirect on mvt's ingress: the kernel refuses it (the hook only sets
      // the scene). eth0 is attached by then (its addresses moved), and IPv6 off refuses them back.
      if (step.change.op === 'add-filter' && step.change.link.name === 'mvt') {
        pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
      }
    });
    expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
    expect(error.message).toContain('This filter block is shared');
    expect(error.message).toContain('addresses removed from eth0 (fd00:200::2/64)');
    const hint = (error as { hint?: string }).hint;
    expect(hint).toContain('`vcnet detach`');
    expect(hint).toContain('mvt is a macvtap the VM uses as it is');
    expect(hint).not.toContain(sharedBlockRemedy);
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(readSandbox('sharedmv', stateDir)).toBeUndefined();
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe("a rollback beside another tool's filter put into vcnet's own ingress qdisc during the attach", () => {
  const otherFilter = (link: string) =>
    `filter add dev ${link} ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7`.split(' ');

  /** Checks the qdisc stayed, handed over, and that gc leaves it too; then takes it away by hand. */
  async function expectHandedOver(
    pod: TestNamespace,
    link: string,
    sandbox: string,
    before: ReturnType<typeof fingerprint>,
  ): Promise<void> {
    // Handed over, not left: no record, so neither detach nor gc will ever delete it.
    expect(readSandbox(sandbox, stateDir)).toBeUndefined();
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    // Nothing else of the attach is left.
    expectOnlyOthersFilterLeft(pod, link, before);
  }

  it('tcfilter: the error says the ingress qdisc on eth0 stays and why, never "everything … removed"', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    let previous: PlanStep | undefined;
    const { result: error, notices } = await withNotices(() =>
      attachFailure('handover', config(pod, 'tcfilter'), (step) => {
        const last = previous;
        previous = step;
        if (last?.change.op !== 'add-qdisc' || last.change.link.name !== 'eth0') return;
        pod.exec('tc', otherFilter('eth0'));
        throw new Error("injected fault after another tool's filter went into vcnet's ingress qdisc");
      }),
    );
    expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).toContain('injected fault');
    expect(error.message).not.toContain('(everything it had made was removed)');
    expect(error.message).toContain(
      "everything it had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100)",
    );
    // The notice of the kept qdisc is the attach's, told as its rollback: no detach was run.
    expect(notices).toContainEqual({
      operation: 'attach',
      endpoint: 'eth0',
      message:
        "rolling back the failed attach: kept the ingress qdisc on eth0: it holds another tool's filter (prio 100); only vcnet's own filters in it were deleted",
    });
    expect(notices.map((notice) => notice.operation)).not.toContain('detach');
    await expectHandedOver(pod, 'eth0', 'handover', before);
  });

  // add-iface attaches its endpoint as attach does: its rollback's notices are the add-iface's, which
  // the user ran (they were published as an attach's, an operation nobody ran).
  it("add-iface: the notice of the qdisc its rollback keeps is the add-iface's, not an attach's", async () => {
    const { pod } = makePod();
    await attachSandbox('handoveradd', config(pod, 'tcfilter'), { stateDirectory: stateDir });
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7-peer']);
    pod.exec('ip', ['link', 'set', 'eth7', 'up']);
    pod.exec('ip', ['addr', 'add', '10.207.0.2/24', 'dev', 'eth7']);
    let previous: PlanStep | undefined;
    setApplyTestHook((step) => {
      const last = previous;
      previous = step;
      if (last?.change.op !== 'add-qdisc' || last.change.link.name !== 'eth7') return;
      pod.exec('tc', otherFilter('eth7'));
      throw new Error("injected fault after another tool's filter went into vcnet's ingress qdisc");
    });
    let outcome: { result: unknown; notices: NoticeEvent[] };
    try {
      outcome = await withNotices(() =>
        addInterface('handoveradd', JSON.stringify({ name: 'eth7' }), { stateDirectory: stateDir }).then(
          () => new Error('add-iface succeeded'),
          (caught: unknown) => caught,
        ),
      );
    } finally {
      setApplyTestHook(undefined);
    }
    expect((outcome.result as Error).message).toContain('injected fault');
    expect(outcome.notices).toContainEqual({
      operation: 'add-iface',
      endpoint: 'eth7',
      message:
        "rolling back the failed add-iface: kept the ingress qdisc on eth7: it holds another tool's filter (prio 100); only vcnet's own filters in it were deleted",
    });
    expect(outcome.notices.map((notice) => notice.operation)).not.toContain('attach');
    // eth0's attach stays, as the sandbox's; eth7 keeps only the handed-over qdisc.
    expect(pod.exec('tc', 'filter show dev eth7 ingress'.split(' '))).not.toContain('Redirect');
    await detachSandbox('handoveradd', { stateDirectory: stateDir });
  });

  // vcnet watch attaches a link that appears as add-iface does: its rollback's notices are the watch's.
  it("watch: the notices of its rollback and of its plans are the watch's, and the failure's error says what stays", async () => {
    const { pod } = makePod();
    await attachSandbox('handoverwatch', config(pod, 'tcfilter'), { stateDirectory: stateDir });
    const notices: NoticeEvent[] = [];
    const onNotice = (message: unknown) => notices.push(message as NoticeEvent);
    channels.notice.subscribe(onNotice);
    let previous: PlanStep | undefined;
    let faults = 0;
    setApplyTestHook((step) => {
      const last = previous;
      previous = step;
      if (last?.change.op !== 'add-qdisc' || last.change.link.name !== 'eth7' || faults > 0) return;
      faults++;
      pod.exec('tc', otherFilter('eth7'));
      throw new Error("injected fault after another tool's filter went into vcnet's ingress qdisc");
    });
    const watching = await watchSandbox('handoverwatch', { stateDirectory: stateDir, debounceMs: 50 });
    // Said once the try's record is written (a record read earlier may be its journal, mid-attach).
    const attached = () =>
      notices.some((notice) => notice.message === 'attached eth7, which could not be attached before');
    try {
      pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7-peer']);
      pod.exec('ip', ['link', 'set', 'eth7', 'up']);
      pod.exec('ip', ['addr', 'add', '10.207.0.2/24', 'dev', 'eth7']);
      // The first try fails; the next one, on the watch's timer, attaches eth7 beside the other tool's filter.
      await until(attached, 'eth7 attached by the try after the failed one');
    } finally {
      await watching.stop();
      setApplyTestHook(undefined);
      channels.notice.unsubscribe(onNotice);
    }
    const failure = notices.find((notice) => notice.message.startsWith('could not attach eth7'));
    expect(failure?.operation).toBe('watch');
    expect((failure?.error as Error | undefined)?.message).toContain(
      "everything it had made was removed but the ingress qdisc on eth7, which stays: it holds another tool's filter (prio 100)",
    );
    expect(notices).toContainEqual({
      operation: 'watch',
      endpoint: 'eth7',
      message:
        "rolling back the failed attach: kept the ingress qdisc on eth7: it holds another tool's filter (prio 100); only vcnet's own filters in it were deleted",
    });
    // The second try's plan sees the other tool's filter ahead of vcnet's redirect: said as the watch's.
    expect(notices).toContainEqual(
      expect.objectContaining({
        operation: 'watch',
        endpoint: 'eth7',
        message: expect.stringContaining("eth7's ingress has another tool's filter ahead of vcnet's redirect"),
      }),
    );
    expect(notices.map((notice) => notice.operation)).not.toContain('attach');
    expect(notices.map((notice) => notice.operation)).not.toContain('add-iface');
    await detachSandbox('handoverwatch', { stateDirectory: stateDir });
    // The detach took vcnet's redirect on eth7 and left the other tool's filter.
    expect(pod.exec('tc', 'filter show dev eth7 ingress'.split(' '))).not.toContain('Redirect');
    expect(pod.exec('tc', 'filter show dev eth7 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
  });

  it("macvtap: the same for the ingress qdisc on the pod's own macvtap (its rx limit's redirect)", async () => {
    const { pod } = makePod();
    addPodMacvtap(pod);
    const before = fingerprint(pod);
    const error = await attachFailure('handovermv', config(pod, 'macvtap'), (step) => {
      if (step.change.op !== 'add-filter' || step.change.link.name !== 'mvt') return;
      pod.exec('tc', otherFilter('mvt'));
      throw new Error("injected fault after another tool's filter went into vcnet's ingress qdisc");
    });
    expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).not.toContain('(everything it had made was removed)');
    expect(error.message).toContain(
      "everything it had made was removed but the ingress qdisc on mvt, which stays: it holds another tool's filter (prio 100)",
    );
    await expectHandedOver(pod, 'mvt', 'handovermv', before);
  });
});

describe("what an attach's rollback hands over to another tool, with the rest of what it says", () => {
  const otherFilter = (link: string) =>
    `filter add dev ${link} ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7`.split(' ');

  it("names the ingress qdisc the undo of an earlier endpoint (eth0) kept, when the next one's (eth1) failed", async () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const error = await attachFailure('earlier', { ...config(pod, 'tcfilter'), rateLimit: {} }, (step) => {
      // eth1's first step: eth0 is attached, its ingress qdisc vcnet's; another tool's filter goes in.
      if (!('link' in step.change) || step.change.link.name !== 'tap1_kata') return;
      pod.exec('tc', otherFilter('eth0'));
      throw new Error("injected fault in eth1 after another tool's filter went into eth0's ingress qdisc");
    });
    expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
    expect(error.message).toMatch(/^attaching eth1 failed: .*injected fault in eth1/);
    expect(error.message).toContain(
      "everything it and the endpoint attached before it (eth0) had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100)",
    );
    expect(readSandbox('earlier', stateDir)).toBeUndefined();
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
    pod.exec('tc', 'qdisc del dev eth0 ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(before);
  });

  it('says what was handed over apart from what is left, when the undo was refused too', async () => {
    const { pod } = makePod();
    addPodMacvtap(pod);
    const before = fingerprint(pod);
    const error = await attachFailure('both', config(pod, 'macvtap'), (step) => {
      // mvt's rx limit: its ingress qdisc is vcnet's, another tool's filter goes in; eth0 is attached
      // by then (its addresses moved), and IPv6 off refuses them back.
      if (step.change.op !== 'add-filter' || step.change.link.name !== 'mvt') return;
      pod.exec('tc', otherFilter('mvt'));
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
      throw new Error("injected fault after another tool's filter went into vcnet's ingress qdisc on mvt");
    });
    expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
    expect(error.message).toMatch(
      /: left addresses removed from eth0 \(fd00:200::2\/64\), .*; handed over, not left: the ingress qdisc on mvt, which stays: it holds another tool's filter \(prio 100\) \(vcnet's own filters in it were deleted and no record keeps it/,
    );
    expect((error as { handedOver?: string[] }).handedOver).toEqual([
      "the ingress qdisc on mvt, which stays: it holds another tool's filter (prio 100)",
    ]);
    // The record keeps what is left, and nothing of what was handed over.
    const steps = readSandbox('both', stateDir)?.network.endpoints.flatMap(
      (endpoint) => endpoint.plumbing?.steps ?? [],
    );
    expect(steps).toEqual(error.left);
    expect(steps?.map((step) => step.step)).not.toContain('add-qdisc');
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(readSandbox('both', stateDir)).toBeUndefined();
    expect(pod.exec('tc', 'filter show dev mvt ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
    pod.exec('tc', 'qdisc del dev mvt ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(before);
  });

  it("one endpoint's undo whose answers are lost and whose look fails: the qdisc it handed over is in no record, nor said left", async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    // eth0's redirect is the step after vcnet's ingress qdisc on eth0: another tool's filter goes into
    // that qdisc, the attach fails there, and from the undo's batch on every answer is lost (its plan,
    // which sees the other tool's filter, is read before it).
    let armed = false;
    let changeSends = 0;
    setNetlinkRepliesTestHook((requests) => {
      if (!armed) return undefined;
      if (!requests.every((request) => isGetRequest(request.type))) changeSends++;
      return changeSends > 0 ? { errno: 'ENOBUFS' } : undefined;
    });
    const error = (await attachFailure('lostlook', { ...config(pod, 'tcfilter'), rateLimit: {} }, (step) => {
      if (step.change.op !== 'add-filter' || step.change.link.name !== 'eth0') return;
      pod.exec('tc', otherFilter('eth0'));
      armed = true;
      throw new Error("injected fault after another tool's filter went into vcnet's ingress qdisc on eth0");
    })) as Error & { code?: string; left?: Array<{ step: string; link?: string }>; notChecked?: string[] };
    setNetlinkRepliesTestHook(undefined);
    expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
    expect(error.message).toContain(
      "not checked (the kernel's answers were lost and no look could be made: maybe gone, kept in the record) tun tap0_kata, ingress qdisc on tap0_kata; handed over, not left: the ingress qdisc on eth0, which stays",
    );
    expect(error.notChecked).toEqual(['tun tap0_kata', 'ingress qdisc on tap0_kata']);
    // The record keeps what may be left, and nothing of what was handed over.
    const steps = readSandbox('lostlook', stateDir)?.network.endpoints.flatMap(
      (endpoint) => endpoint.plumbing?.steps ?? [],
    );
    expect(steps).toEqual(error.left);
    expect(steps?.map((step) => ('link' in step ? `${step.step} on ${step.link}` : step.step))).toEqual([
      'create-link',
      'add-qdisc on tap0_kata',
    ]);
    await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
    expect(readSandbox('lostlook', stateDir)).toBeUndefined();
    expect(pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
    pod.exec('tc', 'qdisc del dev eth0 ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('an attach undone when the record write after its last endpoint is refused (Network.addEndpoints)', () => {
  const otherFilter = (link: string) =>
    `filter add dev ${link} ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7`.split(' ');

  /**
   * What attachRecorded threw when every record write from the one after the last step was sent
   * refused (a disk full then): the first refused is the journal addEndpoints writes once every
   * endpoint is attached, before the attach's final record. `lastStep` tells the hook's last step.
   */
  async function writesRefusedAfterLastStep(
    network: Network,
    lastStep: (step: PlanStep) => boolean,
    atLastStep: () => void,
  ): Promise<Error & { code?: string; left?: unknown[]; handedOver?: string[] }> {
    let refusing = false;
    setApplyTestHook((step) => {
      if (!lastStep(step)) return;
      atLastStep();
      refusing = true;
    });
    try {
      return await attachRecorded(
        network,
        {},
        {
          persist: () => {
            if (refusing) throw new Error('injected: no space left for the record');
          },
          discard: () => {},
          path: 'test record',
        },
      ).then(
        () => new Error('attach succeeded'),
        (caught: unknown) => caught as Error,
      );
    } finally {
      setApplyTestHook(undefined);
    }
  }

  it('says the ingress qdisc its undo handed over stays, naming every endpoint undone', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const network = Network.open({ ...config(pod, 'tcfilter'), rateLimit: {} });
    try {
      const error = await writesRefusedAfterLastStep(
        network,
        (step) => step.change.op === 'add-filter' && step.change.link.name === 'tap1_kata',
        () => pod.exec('tc', otherFilter('eth0')),
      );
      expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
      expect(error.message).toBe(
        "attaching eth0 failed: injected: no space left for the record (everything it and the endpoint attached with it (eth1) had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100); vcnet's own filters in it were deleted and no record keeps it, as it is that tool's now: neither detach nor gc will delete it)",
      );
      expect(error.handedOver).toEqual([
        "the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100)",
      ]);
      expect(network.endpoints()).toEqual([]);
    } finally {
      network.close();
    }
    expectOnlyOthersFilterLeft(pod, 'eth0', before);
  });

  it('with part of the undo refused, says what its undo was of without an endpoint "before" a failing one', async () => {
    const { pod } = makePod();
    addPodMacvtap(pod);
    const before = fingerprint(pod);
    const network = Network.open(config(pod, 'macvtap'));
    try {
      const error = await writesRefusedAfterLastStep(
        network,
        (step) => step.change.op === 'add-filter' && step.change.link.name === 'mvt',
        // eth0's addresses moved to the guest by then; IPv6 off refuses them back.
        () => pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']),
      );
      expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
      expect(error.message).toMatch(
        /^attach failed: injected: no space left for the record; undoing the endpoints it attached \(eth0, mvt\) failed too \(/,
      );
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
      const report = await network.removeEndpoints();
      expect(report.failures).toEqual([]);
    } finally {
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
      network.close();
    }
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('an attach undone after its plumbing was complete (its last record write refused)', () => {
  const otherFilter = (link: string) =>
    `filter add dev ${link} ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7`.split(' ');

  /**
   * What attachRecorded (the journaled attach of `vcnet attach` and vcnet-cni ADD) threw when every
   * record write but the one of the finished attach went through; `hook` sees each step sent. The
   * records written, the last one in `written`.
   */
  async function lastWriteRefused(
    network: Network,
    hook: Parameters<typeof setApplyTestHook>[0],
  ): Promise<{ error: Error & { code?: string; left?: unknown[]; handedOver?: string[] }; written: () => unknown }> {
    let finishing = false;
    let written: unknown;
    setApplyTestHook(hook);
    try {
      const error = await attachRecorded(
        network,
        {},
        {
          persist: () => {
            if (finishing) throw new Error('injected: the record of the finished attach could not be written');
            written = structuredClone(network.save());
          },
          finishing: (finished = true) => {
            finishing = finished;
          },
          discard: () => {
            written = undefined;
          },
          path: 'test record',
        },
      ).then(
        () => new Error('attach succeeded'),
        (caught: unknown) => caught as Error,
      );
      return { error, written: () => written };
    } finally {
      setApplyTestHook(undefined);
    }
  }

  it('says the ingress qdisc its undo handed over stays, where it said only why the attach failed', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const network = Network.open({ ...config(pod, 'tcfilter'), rateLimit: {} });
    try {
      const { error, written } = await lastWriteRefused(network, (step) => {
        // The last step, the tap's redirect: vcnet's ingress qdisc on eth0 is there; another tool's filter goes in.
        if (step.change.op === 'add-filter' && step.change.link.name === 'tap0_kata')
          pod.exec('tc', otherFilter('eth0'));
      });
      expect(error.code, error.message).toBe('VCNET_ATTACH_FAILED');
      expect(error.message).toBe(
        "attaching eth0 failed: injected: the record of the finished attach could not be written (everything it had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100); vcnet's own filters in it were deleted and no record keeps it, as it is that tool's now: neither detach nor gc will delete it)",
      );
      expect(error.cause).toBeInstanceOf(Error);
      expect(written()).toBeUndefined();
    } finally {
      network.close();
    }
    expectOnlyOthersFilterLeft(pod, 'eth0', before);
  });

  it('says what it handed over apart from what is left, when the undo was refused too', async () => {
    const { pod } = makePod();
    addPodMacvtap(pod);
    const before = fingerprint(pod);
    const network = Network.open(config(pod, 'macvtap'));
    try {
      const { error, written } = await lastWriteRefused(network, (step) => {
        // mvt's rx limit: its ingress qdisc is vcnet's, another tool's filter goes in; eth0's
        // addresses moved to the guest by then, and IPv6 off refuses them back.
        if (step.change.op !== 'add-filter' || step.change.link.name !== 'mvt') return;
        pod.exec('tc', otherFilter('mvt'));
        pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1']);
      });
      expect(error.code, error.message).toBe('VCNET_ROLLBACK_INCOMPLETE');
      expect(error.message).toMatch(
        /^attach failed: injected: the record of the finished attach could not be written; undoing it failed too \(.*\): left addresses removed from eth0 \(fd00:200::2\/64\), .*; handed over, not left: the ingress qdisc on mvt, which stays: it holds another tool's filter \(prio 100\) \(vcnet's own filters in it were deleted and no record keeps it/,
      );
      expect(error.handedOver).toEqual([
        "the ingress qdisc on mvt, which stays: it holds another tool's filter (prio 100)",
      ]);
      // The network holds what is left alone, nothing of what was handed over; and so does the record,
      // written again after the undo (it was the last journal, naming everything the attach made), as an
      // unfinished attach's, which gc finishes.
      const left = network.save().endpoints.flatMap((endpoint) => endpoint.plumbing?.steps ?? []);
      expect(left).toEqual(error.left);
      expect(left.map((step) => step.step)).not.toContain('add-qdisc');
      expect(written()).toEqual(network.save());
      expect(network.save().endpoints.map((endpoint) => endpoint.plumbing?.model)).toEqual(['pending']);
      // The cause goes away; the undo of what is left (a detach of the record's endpoints) finishes it.
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
      const report = await network.removeEndpoints();
      expect(report.failures).toEqual([]);
      expect(network.endpoints()).toEqual([]);
    } finally {
      pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=0']);
      network.close();
    }
    expect(pod.exec('tc', 'filter show dev mvt ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
    pod.exec('tc', 'qdisc del dev mvt ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(before);
  });
});
