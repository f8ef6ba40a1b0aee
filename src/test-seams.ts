/**
 * Test seams: hooks production never sets, which a test sets to hold or fail an operation at one
 * point (a step of an attach, a moment of gc, a walk of every process's fds), or to shorten a fixed
 * wait it would otherwise sit out (an unplug from a VM whose guest never releases the NIC, an agent
 * that never answers, a watch's period between looks at a VM: waitThroughSeam below). Each is kept
 * on globalThis under a registered symbol, not in the module that calls it: the `vcnet` and
 * `vcnet-cni` programs are bundles with their own copy of every module, and a test preloads dist/
 * into such a program (test/helpers/fault-preload.mjs, short-waits-preload.mjs) to set the hook the
 * bundle's copy calls.
 *
 * A wait's hook is given the product's wait and returns the one to use; the caller quotes the one
 * used in what it says (so a test still reads the real text), and with no hook it is the product's.
 * Signatures stay as they are: a seam is never an option a production caller could pass.
 *
 * The names below are that contract: a preload and a bundle of another build find each other by
 * them, so they do not change.
 */

/** Every seam, by the `Symbol.for` name it is kept under on globalThis. */
export const TEST_SEAM_NAMES = Object.freeze({
  /** plan/apply.ts: before each step of a plan is sent (setApplyTestHook). */
  applyStep: 'vcnet.applyTestHook',
  /** netlink/transport.ts: after each send, whether the answers to it are lost (setNetlinkRepliesTestHook). */
  netlinkReplies: 'vcnet.netlinkRepliesTestHook',
  /** plan/link-creation.ts: the index the next tap or ifb is tried at (setLinkIndexTestHook). */
  linkIndex: 'vcnet.linkIndexTestHook',
  /** network/gc/orphan-links.ts: before gc lists the ingress qdiscs it emptied again (setGcIngressTestHook). */
  gcIngress: 'vcnet.gcIngressTestHook',
  /** network/garbage-collector.ts: after gc's first look (step 1), before it reads the records (setGcFirstLookTestHook). */
  gcFirstLook: 'vcnet.gcFirstLookTestHook',
  /** network/gc/gone-records.ts: before gc takes the lock of a record it drops (setGcDropTestHook). */
  gcDrop: 'vcnet.gcDropTestHook',
  /** netns/mountinfo.ts: once per walk of every process's fds (setFdWalkTestHook). */
  fdWalk: 'vcnet.namespaceHoldersFdWalkTestHook',
  /** sandbox/tc-repair-retry.ts: when a tc check on the timer is asked for (setTrafficControlRetryTestHook). */
  trafficControlRetry: 'vcnet.trafficControlRetryTestHook',
  /** hypervisor/qmp-network-hotplug.ts: how long an unplug waits for the guest to release the NIC (setUnplugWaitTestHook). */
  unplugWait: 'vcnet.unplugWaitTestHook',
  /** sandbox/hypervisor-connection.ts: how long a sandbox's agent connect is tried in all (setAgentConnectWaitTestHook). */
  agentConnectWait: 'vcnet.agentConnectWaitTestHook',
  /** sandbox/sandbox-watch.ts: how often a watch whose pod is gone looks whether its VM still runs (setWatchVmPollTestHook). */
  watchVmPoll: 'vcnet.watchVmPollTestHook',
});

export type TestSeamName = keyof typeof TEST_SEAM_NAMES;

/** One seam: `set` installs a hook (undefined removes it), `hook` is the one installed, if any. */
export interface TestSeam<Hook extends (...args: never[]) => unknown> {
  set(hook: Hook | undefined): void;
  hook(): Hook | undefined;
}

/** The seam kept under `TEST_SEAM_NAMES[name]`, its hook typed by the module that calls it. */
export function testSeam<Hook extends (...args: never[]) => unknown>(name: TestSeamName): TestSeam<Hook> {
  const key = Symbol.for(TEST_SEAM_NAMES[name]);
  const holder = globalThis as { [key: symbol]: Hook | undefined };
  return {
    set(hook) {
      if (hook) holder[key] = hook;
      else delete holder[key];
    },
    hook: () => holder[key],
  };
}

/** A wait: the product's `productMs`, or the one the seam's hook (a test's) gives instead. */
export function waitThroughSeam(seam: TestSeam<(productMs: number) => number>, productMs: number): number {
  return seam.hook()?.(productMs) ?? productMs;
}
