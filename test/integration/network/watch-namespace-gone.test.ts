/**
 * A pod deleted under `vcnet watch` (its namespace path removed, as `ip netns del` or a runtime's
 * teardown does). The watch works through an fd of the namespace, which keeps it alive: it used to
 * run on silently, pinning the dead pod's namespace (its veth and vcnet's tap stayed). Now it says
 * so once and, when no VM is left either, ends as after a detach, letting the namespace go.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { setWatchVmPollTestHook, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet, vcnetAsync } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { startFakeQmpServer } from '../../unit/hypervisor/fake-qmp-server.js';

const cleanup = cleanupAfterEach();

function watchNotices(): string[] {
  const notices: string[] = [];
  const onNotice = (message: unknown) => {
    if ((message as NoticeEvent).operation === 'watch') notices.push((message as NoticeEvent).message);
  };
  channels.notice.subscribe(onNotice);
  cleanup.defer(() => channels.notice.unsubscribe(onNotice));
  return notices;
}

/** Whether the node's end of the pod's veth is still there (it goes with the pod's namespace). */
const nodeLinks = (node: ReturnType<typeof makePod>['node']) =>
  node.ipJson<Array<{ ifname: string }>>('link', 'show').map((entry) => entry.ifname);

describe('vcnet watch: the pod namespace deleted under it', () => {
  it('with no VM, says so once and ends, letting the namespace go; detach then drops the record', async () => {
    const stateDir = cleanup.directory('vcnet-watch-nsgone-');
    const { pod, node } = makePod();
    expect(vcnet(['attach', '--sandbox', 'z1', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const notices = watchNotices();
    const watching = await watchSandbox('z1', { stateDirectory: stateDir, debounceMs: 50 });
    cleanup.defer(() => watching.stop());
    pod.delete();
    const ended = await Promise.race([
      watching.ended,
      new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 15_000)),
    ]);
    // It used to run on: nothing changes in a namespace nobody else holds.
    expect(ended).not.toBe('running');
    expect(ended).toMatchObject({ code: 'VCNET_NETNS_GONE' });
    const said = notices.filter((message) => message.includes(pod.path));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/no VM is left/);
    expect(said[0]).toContain('vcnet detach --sandbox z1');
    // The watch's hold was the last one: the namespace, and the veth's node end with it, go.
    await until(() => !nodeLinks(node).includes('veth0'), 'the pod namespace to go');
    expect(vcnet(['detach', '--sandbox', 'z1', '--state-dir', stateDir]).status).toBe(0);
    expect(existsSync(join(stateDir, 'z1', 'state.json'))).toBe(false);
  }, 60_000);

  it('with the VM still running, says so once and watches on; ends once the VM is gone', async () => {
    const stateDir = cleanup.directory('vcnet-watch-nsgone-');
    const { pod } = makePod();
    const qmp = await startFakeQmpServer();
    let qmpClosed = false;
    cleanup.defer(() => (qmpClosed ? undefined : qmp.close()));
    const agent = join(stateDir, 'agent.sock');
    const attach = ['attach', '--sandbox', 'z2', '--netns', pod.path, '--state-dir', stateDir];
    expect(vcnet([...attach, '--qmp', qmp.socketPath, '--agent', agent]).status).toBe(0);
    const notices = watchNotices();
    // The watch looks at the VM every 5 s once the path is gone: 50 ms here (its detach poll's
    // 1 s then sets the pace), as the test waits for two of those looks and the one after the VM goes.
    setWatchVmPollTestHook(() => 50);
    cleanup.defer(() => setWatchVmPollTestHook(undefined));
    const watching = await watchSandbox('z2', { stateDirectory: stateDir, debounceMs: 50 });
    cleanup.defer(() => watching.stop());
    pod.delete();
    await until(() => notices.some((message) => message.includes(pod.path)), 'the watch to say the path is gone');
    const said = notices.filter((message) => message.includes(pod.path));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/VM still runs/);
    // The watch checks the VM again every few seconds (probing its QMP socket): once a second probe
    // after this one has come, the first has been answered and acted on, and the watch must go on.
    let endedEarly = false;
    void watching.ended.then(() => {
      endedEarly = true;
    });
    const probes = qmp.connections();
    await until(() => endedEarly || qmp.connections() >= probes + 2, 'the watch to check the VM twice more', 30_000);
    expect(endedEarly).toBe(false);
    qmpClosed = true;
    await qmp.close();
    const ended = await Promise.race([
      watching.ended,
      new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 20_000)),
    ]);
    expect(ended).toMatchObject({ code: 'VCNET_NETNS_GONE' });
    expect(notices.filter((message) => message.includes(pod.path))).toHaveLength(2);
    expect(vcnet(['detach', '--sandbox', 'z2', '--state-dir', stateDir]).status).toBe(0);
  }, 90_000);

  it('vcnet watch ends with exit 0 and says why', async () => {
    const stateDir = cleanup.directory('vcnet-watch-nsgone-');
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'z3', '--netns', pod.path, '--state-dir', stateDir]).status).toBe(0);
    const run = vcnetAsync(['watch', '--sandbox', 'z3', '--state-dir', stateDir, '--debounce', '50']);
    cleanup.defer(() => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    });
    await until(() => run.output().stderr.includes('watching sandbox z3'), 'the watch to start');
    pod.delete();
    const result = await Promise.race([
      run.done,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000)),
    ]);
    expect(result, run.output().stderr).toBeDefined();
    expect(result?.status, result?.stderr).toBe(0);
    expect(result?.stderr).toMatch(/namespace .* is gone and no VM is left; watch ends/);
    expect(vcnet(['detach', '--sandbox', 'z3', '--state-dir', stateDir]).status).toBe(0);
  }, 60_000);
});
