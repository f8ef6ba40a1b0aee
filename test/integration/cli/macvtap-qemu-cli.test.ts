/**
 * The QEMU command line `vcnet attach --model macvtap` prints, run as printed: a macvtap cannot be
 * opened by name (TUNSETIFF refuses it), so its /dev/tapN queues are passed as descriptors, and the
 * printed line ends with the shell redirections that open them. Real QEMU 7.2, paused, no guest.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { qemuIntegrationSkipReason } from '../hypervisor/paused-qemu.js';

const stateDirectory = stateDirectoryPerTest();
const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the macvtap QEMU command-line test: ${skipReason}`);

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

describe.skipIf(skipReason !== undefined)('attach --model macvtap: the printed QEMU command line', () => {
  it.each([1, 2])(
    'passes the /dev/tapN queues as descriptors, and QEMU takes them as printed (%i queue(s))',
    async (queues) => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const attach = (json: boolean) =>
        vcnet([
          'attach',
          '--sandbox',
          `mq${queues}`,
          '--netns',
          pod.path,
          '--model',
          'macvtap',
          '--queues',
          String(queues),
          '--vhost-net',
          'off',
          '--state-dir',
          stateDirectory(),
          ...(json ? ['--json'] : []),
        ]);
      const attached = attach(true);
      expect(attached.status, attached.stderr).toBe(0);
      cleanups.push(() => vcnet(['detach', '--sandbox', `mq${queues}`, '--state-dir', stateDirectory()]));
      const output = JSON.parse(attached.stdout);
      const node: string = output.endpoints[0].tapDevice;
      expect(node).toMatch(/^\/dev\/tap\d+$/);
      const [device] = output.hypervisor.devices;
      const fds = Array.from({ length: queues }, (_, index) => ({ fd: 3 + index, path: node }));
      expect(device.fds).toEqual(fds);
      const netdev: string = device.config[1];
      expect(netdev).not.toContain('ifname=');
      expect(netdev).toContain(queues === 1 ? 'fd=3' : 'fds=3:4');

      // The human line is the same arguments followed by `3<>/dev/tapN`: run it through bash as printed.
      expect(vcnet(['detach', '--sandbox', `mq${queues}`, '--state-dir', stateDirectory()]).status).toBe(0);
      const human = attach(false);
      expect(human.status, human.stderr).toBe(0);
      const line = human.stdout
        .split('\n')
        .find((text) => text.trimStart().startsWith('eth0: -netdev'))
        ?.replace(/^\s*eth0: /, '');
      expect(line).toMatch(/ 3<>\/dev\/tap\d+( 4<>\/dev\/tap\d+)?$/);

      const directory = mkdtempSync(join(tmpdir(), 'vcnet-macvtap-qemu-'));
      cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
      const socket = join(directory, 'qmp.sock');
      const qemu = spawn(
        'bash',
        [
          '-c',
          `exec qemu-system-x86_64 -machine pc -accel tcg -m 64 -S -display none -nodefaults -qmp unix:${socket},server=on,wait=off ${line}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      qemu.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      cleanups.push(() => qemu.kill('SIGKILL'));
      const exited = new Promise<number | null>((resolve) => qemu.on('exit', (code) => resolve(code)));
      const qmp = await Promise.race([
        (async () => {
          for (let attempt = 0; attempt < 100; attempt++) {
            try {
              return await QmpClient.connect(socket, { timeoutMs: 5_000 });
            } catch {
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
          }
          throw new Error('QMP never answered');
        })(),
        exited.then((code) => {
          throw new Error(`QEMU exited (${code}) with: ${stderr}`);
        }),
      ]);
      try {
        const network = String(await qmp.execute('human-monitor-command', { 'command-line': 'info network' }));
        expect(network).toContain('netdev-net0');
        expect(network).toMatch(/type=tap,fd=3/);
      } finally {
        await qmp.execute('quit').catch(() => undefined);
        await qmp.close();
      }
      await exited;
      expect(vcnet(['detach', '--sandbox', `mq${queues}`, '--state-dir', stateDirectory()]).status).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    },
  );

  it('refuses Firecracker with the macvtap model before anything is made', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const refused = vcnet([
      'attach',
      '--sandbox',
      'fc-mv',
      '--netns',
      pod.path,
      '--model',
      'macvtap',
      '--hypervisor',
      'firecracker',
      '--state-dir',
      stateDirectory(),
    ]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--model.*"macvtap".*tcfilter or none with the firecracker hypervisor/);
    expect(fingerprint(pod)).toEqual(before);
  });
});
