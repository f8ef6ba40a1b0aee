/**
 * detach of a sandbox whose devices a process still has open (a VM vcnet has no socket of): detach
 * goes on (gc and CNI DEL must finish) but warns, naming the device and the pid. It used to say
 * nothing while the VM was cut off. No VM is needed: a process holding the tap's fd is what the
 * kernel sees either way.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-detach-held-');
let holder: ChildProcess | undefined;
afterEach(() => {
  holder?.kill('SIGKILL');
  holder = undefined;
});

/** A process in the namespace holding `open` (a shell redirection) until killed; resolves once it holds it. */
async function hold(namespacePath: string, script: string): Promise<ChildProcess> {
  const child = spawn('nsenter', [`--net=${namespacePath}`, 'sh', '-c', `${script}; echo held; exec sleep 60`]);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (data: Buffer) => {
      if (String(data).includes('held')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  return child;
}

describe('detach while a process holds the devices', () => {
  it('warns naming the tap and the pid of a tcfilter sandbox, and detaches; quiet once it is let go', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attach = () =>
      vcnet(['attach', '--sandbox', 'h1', '--netns', pod.path, '--state-dir', stateDirectory(), '--json']);
    expect(attach().status).toBe(0);
    const tunSet = `import fcntl,os,struct,time;fd=os.open("/dev/net/tun",os.O_RDWR);fcntl.ioctl(fd,0x400454ca,struct.pack("16sH",b"tap0_kata",0x5002));print("held",flush=True);time.sleep(60)`;
    holder = spawn('nsenter', [`--net=${pod.path}`, '/usr/bin/python3', '-c', tunSet]);
    await new Promise<void>((resolve, reject) => {
      holder?.stdout?.on('data', (data: Buffer) => String(data).includes('held') && resolve());
      holder?.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
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
    holder = await hold(pod.path, `exec 3<>/dev/tap${index}`);
    const detached = vcnet(['detach', '--sandbox', 'h2', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stderr).toMatch(/tap0_kata is still open by pid \d+: the VM is still running/);
  }, 60_000);
});
