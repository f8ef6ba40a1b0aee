/**
 * One change `watchSandbox` could not apply is one notice on `vcnet:notice`: watchSandbox's own,
 * naming the sandbox and its namespace. The NamespaceWatcher under it used to publish one as well
 * (marked handled, as watchSandbox's onError was given to it), so a subscriber heard every failure twice.
 * The failure here: the sandbox's record is damaged while a change comes, so it cannot be applied.
 */
import { readFileSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { SandboxStore } from '../../../src/network/state/store.js';
import { setAgentConnectWaitTestHook } from '../../../src/sandbox/hypervisor-connection.js';
import { watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { startFakeQmpServer } from '../../unit/hypervisor/fake-qmp-server.js';

const cleanup = cleanupAfterEach();

/** A watched sandbox whose next change fails (its record is damaged), and the watch notices heard. */
async function failingWatch(sandbox: string, onError?: (error: Error) => void, subscribe = true) {
  const stateDir = cleanup.directory('vcnet-watch-notice-');
  const { pod } = makePod();
  const before = fingerprint(pod);
  const attach = vcnet(['attach', '--sandbox', sandbox, '--netns', pod.path, '--state-dir', stateDir]);
  expect(attach.status, attach.stderr).toBe(0);
  const notices: NoticeEvent[] = [];
  const onNotice = (message: unknown) => {
    if ((message as NoticeEvent).operation === 'watch') notices.push(message as NoticeEvent);
  };
  if (subscribe) {
    channels.notice.subscribe(onNotice);
    cleanup.defer(() => channels.notice.unsubscribe(onNotice));
  }
  const emitWarning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  cleanup.defer(() => emitWarning.mockRestore());
  const watching = await watchSandbox(sandbox, {
    stateDirectory: stateDir,
    debounceMs: 50,
    ...(onError ? { onError } : {}),
  });
  cleanup.defer(() => watching.stop());
  const record = join(stateDir, sandbox, 'state.json');
  const intact = readFileSync(record, 'utf8');
  writeFileSync(record, '{"damaged": ');
  pod.exec('ip', ['link', 'add', 'eth5', 'type', 'veth', 'peer', 'name', 'peer5']);
  pod.exec('ip', ['addr', 'add', '10.85.0.2/24', 'dev', 'eth5']);
  await until(() => notices.length > 0 || emitWarning.mock.calls.length > 0, 'the change to fail');
  /** Undoes the damage, the watch and the attach: the pod is left as it was. */
  let mended = false;
  const restore = async () => {
    // Once mended, the record is the watch's (eth5 attached since): not written over.
    if (!mended) writeFileSync(record, intact);
    await watching.stop();
    pod.exec('ip', ['link', 'del', 'eth5']);
    expect(vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  };
  /** Undoes the damage only: the watch's next try applies the change. */
  const mend = () => {
    mended = true;
    writeFileSync(record, intact);
  };
  return {
    notices,
    warnings: emitWarning.mock.calls,
    restore,
    mend,
    lockPath: new SandboxStore(sandbox, stateDir).lockPath,
  };
}

/**
 * Resolves once the sandbox lock at `lockPath` has been taken `times` more times: each try of the
 * watch's change takes it, and its holder then empties the lock file and writes its pid there (one or
 * two modifications, which inotify may merge into one), so 2 × times − 1 modifications are `times`
 * tries at least. Polling the watch itself is not possible: a try that fails again says nothing.
 */
async function lockTaken(lockPath: string, times: number): Promise<void> {
  let modifications = 0;
  const watcher = watch(lockPath, (event) => {
    if (event === 'change') modifications++;
  });
  try {
    await until(() => modifications >= 2 * times - 1, `the sandbox lock to be taken ${times} times`);
  } finally {
    watcher.close();
  }
}

describe('vcnet:notice of watchSandbox', () => {
  it('carries each failure once, marked handled, when onError is given', async () => {
    const errors: Error[] = [];
    const { notices, restore } = await failingWatch('n1', (error) => errors.push(error));
    // Read together: a retry may have failed again meanwhile, and each failure adds to both.
    const counts = { notices: notices.length, errors: errors.length };
    expect(counts.errors).toBeGreaterThan(0);
    expect(counts.notices).toBe(counts.errors);
    expect(notices[0]).toMatchObject({ handled: true, details: { sandbox: 'n1' } });
    expect(notices[0]?.message).toMatch(/could not apply a namespace change to sandbox n1/);
    await restore();
  });

  it('carries each failure once, naming the sandbox, without onError', async () => {
    const { notices, restore } = await failingWatch('n2');
    for (const notice of notices) {
      expect(notice).toMatchObject({ details: { sandbox: 'n2' } });
      expect(notice).not.toHaveProperty('handled');
    }
    await restore();
  });

  it('is a process warning of type VcnetWarning naming the sandbox when no one takes it', async () => {
    const { notices, warnings, restore } = await failingWatch('n3', undefined, false);
    expect(notices).toEqual([]);
    expect(warnings[0]).toEqual([
      expect.stringMatching(/could not apply a namespace change to sandbox n3/),
      'VcnetWarning',
    ]);
    await restore();
  });

  it('says a change that keeps failing once, not at each try, and once more when it applies', async () => {
    const errors: Error[] = [];
    const { notices, restore, mend, lockPath } = await failingWatch('n4', (error) => errors.push(error));
    expect(notices[0]?.message).toMatch(
      /tried again after a growing wait .* until it applies, with no warning per try/,
    );
    // The watcher tries again (debounce 50 ms: after 200, 400, 800 ms...): two more tries seen
    // before anything is asserted, however slowly they come.
    await lockTaken(lockPath, 2);
    expect({ notices: notices.length, errors: errors.length }).toEqual({ notices: 1, errors: 1 });
    mend();
    await until(
      () => notices.some((notice) => /^applied the namespace change/.test(notice.message)),
      'the change to apply',
    );
    const applied = notices.find((notice) => /^applied the namespace change/.test(notice.message));
    expect(applied?.details).toMatchObject({ sandbox: 'n4', tries: expect.any(Number) });
    // The watch's own count: the first failure and the two seen above at least.
    expect(Number(applied?.details?.tries)).toBeGreaterThanOrEqual(3);
    expect({ notices: notices.length, errors: errors.length }).toEqual({ notices: 2, errors: 1 });
    await restore();
  });

  it("says an agent that cannot be reached once, though each try's error counts other attempts and time", async () => {
    const stateDir = cleanup.directory('vcnet-watch-notice-');
    const { pod } = makePod();
    const qmp = await startFakeQmpServer();
    cleanup.defer(() => qmp.close());
    // QEMU answers; the agent's socket is not there: each try fails after its connect deadline, the
    // product's 10 s shortened to 2 s (agentConnectWait seam): the test only sits it out, three times.
    setAgentConnectWaitTestHook(() => 2_000);
    cleanup.defer(() => setAgentConnectWaitTestHook(undefined));
    const agent = join(stateDir, 'no-agent.sock');
    const attach = ['attach', '--sandbox', 'n5', '--netns', pod.path, '--state-dir', stateDir];
    expect(vcnet([...attach, '--qmp', qmp.socketPath, '--agent', agent]).status).toBe(0);
    const notices: NoticeEvent[] = [];
    const onNotice = (message: unknown) => {
      if ((message as NoticeEvent).operation === 'watch') notices.push(message as NoticeEvent);
    };
    channels.notice.subscribe(onNotice);
    cleanup.defer(() => channels.notice.unsubscribe(onNotice));
    const errors: Error[] = [];
    const watching = await watchSandbox('n5', {
      stateDirectory: stateDir,
      debounceMs: 50,
      onError: (error) => errors.push(error),
    });
    cleanup.defer(() => watching.stop());
    pod.exec('ip', ['addr', 'add', '10.86.0.2/24', 'dev', 'eth0']);
    // Each try opens QMP first, then waits for the agent.
    const tries = () => qmp.commands.filter((command) => command.execute === 'qmp_capabilities').length;
    await until(() => errors.length > 0, 'the change to fail', 40_000);
    const atFirst = tries();
    // Two more tries begun: the second one has failed and been heard (it used to be a new error line:
    // its text says "after N attempts in M ms").
    await until(() => tries() >= atFirst + 2, 'two more tries', 60_000);
    expect(errors.map((error) => error.message).length, errors.map((error) => error.message).join('\n')).toBe(1);
    expect(notices.filter((notice) => /could not apply a namespace change/.test(notice.message))).toHaveLength(1);
    await watching.stop();
    expect(vcnet(['detach', '--sandbox', 'n5', '--state-dir', stateDir]).status).toBe(0);
  }, 120_000);
});
