/**
 * The search for sockets and taps that keep a namespace alive reads /proc/PID/fd first and copies
 * each fd later (pidfd_getfd). A busy process may close the fd in between and open something else
 * under its number: asking that file SIOCGSKNS or TUNGETDEVNETNS gets ENOTTY, which a kernel
 * without the ioctl answers too. The fresh-machine check hit it (a CI run's workers churning fds):
 * detach refused a record whose namespace was gone with "this kernel lacks SIOCGSKNS (Linux 4.9)".
 * A copied fd that is no longer the socket (same inode) or tun fd the walk saw is passed over, as a
 * closed one is.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import { nativeNamespaces } from '../../../src/native/namespaces.js';
import { type HeldDeviceFd, namespacesOfHeldDevices } from '../../../src/netns/held-device-fds.js';

let child: ChildProcess | undefined;

afterEach(() => {
  child?.kill('SIGKILL');
  child = undefined;
});

/** A process holding a regular file and a socket; resolves with its pid and both fds. */
function fileAndSocketHolder(): Promise<{ pid: number; file: number; socket: number }> {
  const script = `
    const { openSync } = require('node:fs');
    const net = require('node:net');
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      process.stdout.write(JSON.stringify({ file: openSync('/proc/self/status', 'r'), socket: server._handle.fd }) + '\\n');
    });
    setInterval(() => {}, 1000);`;
  child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const started = child;
  return new Promise((resolve, reject) => {
    started.once('error', reject);
    started.stdout?.once('data', (data: Buffer) =>
      resolve({ pid: started.pid as number, ...JSON.parse(String(data)) }),
    );
  });
}

it('passes over an fd whose number now holds another file, instead of saying the kernel lacks the ioctl', async () => {
  nativeNamespaces.load();
  const { pid, file, socket } = await fileAndSocketHolder();
  const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${socket}`))?.[1];
  expect(inode).toBeDefined();
  // What the walk would have noted had `file`'s number been that socket, or a tun fd, a moment before.
  const reused: HeldDeviceFd[] = [
    { pid, fd: file, kind: 'socket', socket: inode as string },
    { pid, fd: file, kind: 'tap' },
  ];
  const stale = namespacesOfHeldDevices(reused, () => {
    throw new Error('no refusal expected: root may copy fds of its own child');
  });
  expect(stale.kernelLacks).toEqual([]);
  expect(stale.byKey.size).toBe(0);
  // The socket itself, under its own number, is still found (in this, the root, namespace).
  const found = namespacesOfHeldDevices([{ pid, fd: socket, kind: 'socket', socket: inode as string }], () => {});
  expect(found.kernelLacks).toEqual([]);
  expect([...found.byKey.values()]).toEqual([[`/proc/${pid}/fd/${socket}`]]);
});
