/**
 * add-iface whose QMP never greets under the sandbox's lock, but greets once while it waits without
 * the lock (another client let go of QEMU's QMP for a moment, and took it again before the command's
 * next try under the lock). The error at the end of the wait used to say "only the first 1000 ms of
 * it under the sandbox's lock" whatever the tries there; it now counts them, as the agent's wait does.
 * The QMP socket is scripted (it greets only the second connection, the wait without the lock):
 * QEMU itself cannot be made to greet one client of several in that order.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { addEth9, recordedLinks } from '../../helpers/held-vm.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { FAKE_GREETING } from '../../unit/hypervisor/fake-qmp-server.js';

const skipReason = process.getuid?.() !== 0 ? 'needs root (network namespaces, taps)' : undefined;
if (skipReason) console.log(`skipping the QMP wait tries test: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-qmp-tries-');
const cleanup = cleanupAfterEach();

describe.skipIf(skipReason !== undefined)('the error of a wait for QMP that went on without the lock', () => {
  it('counts every try under the lock, not only the first, when QMP greeted in between without it', async () => {
    const { pod, node } = makePod();
    const state = ['--state-dir', stateDirectory()];
    const qmpPath = join(stateDirectory(), 'qmp.sock');
    const agentPath = join(stateDirectory(), 'agent.sock');
    const attached = vcnet([
      ...['attach', '--sandbox', 'qt', '--netns', pod.path, ...state],
      ...['--qmp', qmpPath, '--agent', agentPath, '--vhost-net', 'off'],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    // Connection 1 (under the lock) gets no greeting; 2 (the wait without the lock) gets one and its
    // qmp_capabilities answered; 3 (under the lock again) and 4 (the wait without it) get none.
    const sockets: Socket[] = [];
    const qmp = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
      socket.resume();
      if (sockets.length !== 2) return;
      socket.write(`${JSON.stringify(FAKE_GREETING)}\r\n`);
      socket.on('data', (data: Buffer) => {
        const id = /"id"\s*:\s*("[^"]*")/.exec(String(data))?.[1];
        if (String(data).includes('qmp_capabilities')) socket.write(`{"return": {}${id ? `, "id": ${id}` : ''}}\r\n`);
      });
    });
    await new Promise<void>((resolve) => qmp.listen(qmpPath, resolve));
    const closeQmp = () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        qmp.close(() => resolve());
      });
    cleanup.defer(closeQmp);
    addEth9({ pod, node });
    const beforeAdd = fingerprint(pod);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ device: 'eth9', name: 'net9' }));

    const failed = await vcnetAsync(['add-iface', 'qt', request, ...state], { VCNET_QMP_CONNECT_TIMEOUT: '8' }).done;
    expect(failed.status, failed.stderr).toBe(1);
    expect(sockets.length).toBe(4);
    expect(failed.stderr).toContain(`QMP handshake on ${qmpPath}: no greeting from QEMU`);
    expect(failed.stderr).toMatch(
      /\(sandbox qt's VM; 8000 ms in all, \d+ ms of it in 2 tries under the sandbox's lock \(at most 1000 ms each, QMP having greeted in between without it\)\)/,
    );
    expect(failed.stderr).not.toContain('only the first 1000 ms');
    expect(recordedLinks(stateDirectory(), 'qt')).toEqual(['eth0']);
    expect(fingerprint(pod)).toEqual(beforeAdd);

    // The VM "stopped" (nobody listens on its QMP socket): detach removes the sandbox on the host side.
    await closeQmp();
    const detached = vcnet(['detach', '--sandbox', 'qt', ...state]);
    expect(detached.status, detached.stderr).toBe(0);
  }, 120_000);
});
