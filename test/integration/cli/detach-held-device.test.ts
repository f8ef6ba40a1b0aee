/**
 * detach of a sandbox whose devices a process still has open (a VM vcnet has no socket of): detach
 * goes on (gc and CNI DEL must finish) but warns, naming the device and the pid. It used to say
 * nothing while the VM was cut off. No VM is needed: a process holding the tap's fd is what the
 * kernel sees either way.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { holdDeviceFile, holdTapQueue } from '../../helpers/vm-stand-in.js';

const stateDirectory = stateDirectoryPerTest('vcnet-detach-held-');
let holder: ChildProcess | undefined;
afterEach(() => {
  holder?.kill('SIGKILL');
  holder = undefined;
});

describe('detach while a process holds the devices', () => {
  it('warns naming the tap and the pid of a tcfilter sandbox, and detaches; quiet once it is let go', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attach = () =>
      vcnet(['attach', '--sandbox', 'h1', '--netns', pod.path, '--state-dir', stateDirectory(), '--json']);
    expect(attach().status).toBe(0);
    holder = await holdTapQueue(pod.path, 'tap0_kata');
    const detached = vcnet(['detach', '--sandbox', 'h1', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stderr).toContain(`tap0_kata is still open by pid ${holder.pid}: the VM is still running`);
    expect(detached.stderr).toContain('Stop the VM first');
    holder.kill('SIGKILL');
    holder = undefined;
    expect(fingerprint(pod)).toEqual(before);

    expect(attach().status).toBe(0);
    const quiet = vcnet(['detach', '--sandbox', 'h1', '--state-dir', stateDirectory()]);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toContain('still open');
  }, 60_000);

  it('warns naming the macvtap and the pid holding its /dev/tapN', async () => {
    const { pod } = makePod();
    const attached = vcnet([
      ...['attach', '--sandbox', 'h2', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--model', 'macvtap', '--json'],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const index = pod.ipJson<Array<{ ifindex: number }>>('link', 'show', 'tap0_kata')[0]!.ifindex;
    holder = await holdDeviceFile(pod.path, `/dev/tap${index}`);
    const detached = vcnet(['detach', '--sandbox', 'h2', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stderr).toMatch(/tap0_kata is still open by pid \d+: the VM is still running/);
  }, 60_000);

  it('names the pid when the namespace path was deleted while the VM runs in it (the tap is looked for in the namespace as opened)', async () => {
    const { pod } = makePod();
    const attached = vcnet(['attach', '--sandbox', 'h3', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attached.status, attached.stderr).toBe(0);
    holder = await holdTapQueue(pod.path, 'tap0_kata');
    pod.delete();
    expect(existsSync(pod.path)).toBe(false);
    const detached = vcnet(['detach', '--sandbox', 'h3', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stderr).toContain(`process ${holder.pid} still runs in that namespace`);
    expect(detached.stderr).toContain(`tap0_kata is still open by pid ${holder.pid}: the VM is still running`);
    const links = execFileSync('nsenter', [`--net=/proc/${holder.pid}/ns/net`, 'ip', '-br', 'link'], {
      encoding: 'utf8',
    });
    expect(links).not.toContain('tap0_kata');
  }, 60_000);
});
