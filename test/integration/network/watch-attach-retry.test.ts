/**
 * A new link the watch cannot attach is tried again on the watch's growing wait, not with every
 * change: each failed try that made a tap and qdiscs undoes them, and the watcher reads those undos
 * as changes. Tried with every change, the link was tried again by its own rollback, a tap made and
 * deleted every debounce for as long as it failed (measured before: 11 tries a second at a 50 ms
 * debounce). The fault: the executor's test seam refuses eth7's redirect filter, after its tap and
 * ingress qdisc were made.
 */
import { describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { retryDelayMs } from '../../../src/network/namespace-watcher.js';
import { setApplyTestHook } from '../../../src/network/plan/apply.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { fingerprint, makePod, podConfig } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();
const DEBOUNCE_MS = 50;

describe('watch: a new link whose attach keeps failing', () => {
  it('is tried again after a doubling wait, not by its own rollback, and attached by a later try with no change in the namespace', async () => {
    const stateDir = cleanup.directory('vcnet-watch-retry-');
    const { pod } = makePod();
    const before = fingerprint(pod);
    await attachSandbox('retry', podConfig(pod, 'tcfilter'), { stateDirectory: stateDir });
    const tries: number[] = [];
    let failing = true;
    setApplyTestHook((step) => {
      if (step.change.op === 'create-tap') tries.push(performance.now());
      if (failing && step.change.op === 'add-filter' && step.change.link.name === 'eth7')
        throw new Error("injected: eth7's redirect refused");
    });
    cleanup.defer(() => setApplyTestHook(undefined));
    const notices: NoticeEvent[] = [];
    const onNotice = (message: unknown) => notices.push(message as NoticeEvent);
    channels.notice.subscribe(onNotice);
    cleanup.defer(() => channels.notice.unsubscribe(onNotice));
    const watching = await watchSandbox('retry', { stateDirectory: stateDir, debounceMs: DEBOUNCE_MS });
    cleanup.defer(() => watching.stop());
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7-peer']);
    pod.exec('ip', ['link', 'set', 'eth7', 'up']);
    pod.exec('ip', ['addr', 'add', '10.207.0.2/24', 'dev', 'eth7']);
    await until(() => tries.length >= 4, 'four tries at eth7', 30_000);
    failing = false;
    // Each try waited at least the schedule's wait after the one before failed (it was 90 ms apart,
    // the debounce and the try, when the rollback's own changes brought it back).
    const gaps = tries.slice(1, 4).map((at, index) => at - tries[index]!);
    gaps.forEach((gap, index) => {
      expect(gap, `gap before try ${index + 2}: ${gaps.map(Math.round).join(', ')} ms`).toBeGreaterThanOrEqual(
        retryDelayMs(DEBOUNCE_MS, index + 1),
      );
    });
    const said = notices.filter((notice) => notice.operation === 'watch' && notice.endpoint === 'eth7');
    expect(said[0]?.message).toBe(
      `could not attach eth7; tried again after a growing wait (${retryDelayMs(DEBOUNCE_MS, 1)} ms, doubling, at most 30 s apart) and at once when it changes, until it is attached or deleted, with no warning per try and one when it is attached`,
    );
    // Nothing changes in the namespace from here on: the timer's try attaches it.
    await until(
      () =>
        readSandbox('retry', stateDir)?.network.endpoints.some(
          (endpoint) => endpoint.properties.link.name === 'eth7',
        ) === true,
      'eth7 attached by a try on the timer',
      30_000,
    );
    await until(
      () => notices.some((notice) => notice.message === 'attached eth7, which could not be attached before'),
      'the notice that eth7 is attached',
    );
    await watching.stop();
    await detachSandbox('retry', { stateDirectory: stateDir });
    pod.exec('ip', ['link', 'del', 'eth7']);
    expect(fingerprint(pod)).toEqual(before);
  }, 90_000);
});
