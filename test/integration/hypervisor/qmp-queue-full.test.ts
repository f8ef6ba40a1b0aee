/**
 * QmpClient.connect against a real QEMU whose queue of QMP connections is full. QEMU serves one QMP
 * client at a time and listens with a backlog of one: while a client holds QMP, two more connections
 * wait in the queue, and one that gave up (a handshake that timed out) stays there until QEMU takes
 * it, after the holder closes. Meanwhile every connect is refused at once with EAGAIN; connect used
 * to fail with it ("cannot open QMP ...: connect EAGAIN") instead of waiting for QMP to be free.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QmpClient } from '../../../src/hypervisor/qmp.js';
import {
  type PausedQemu,
  prepareNamespace,
  qemuIntegrationSkipReason,
  startPausedQemu,
  stopPausedQemu,
} from './paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping the QMP full-queue test: ${skipReason}`);

/** The errno of one plain connect to `path` (undefined when it connects). */
function connectErrno(path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code));
  });
}

describe.skipIf(skipReason !== undefined)('QmpClient.connect while QEMU queues no more QMP connections', () => {
  let fixture: PausedQemu | undefined;

  afterEach(async () => {
    await stopPausedQemu(fixture);
    fixture = undefined;
  });

  it('waits for the holder to close instead of failing with EAGAIN', async () => {
    fixture = prepareNamespace();
    // The fixture's own connection holds QMP.
    const holder = await startPausedQemu(fixture);
    const socketPath = join(fixture.directory, 'qmp.sock');
    // Two clients that give up waiting: their connections fill the queue, and stay in it.
    const gaveUp = await Promise.all(
      [1, 2].map(() => QmpClient.connect(socketPath, { timeoutMs: 300 }).catch((error: unknown) => error)),
    );
    for (const error of gaveUp) expect((error as Error).message).toMatch(/no greeting from QEMU within 300 ms/);
    expect(await connectErrno(socketPath)).toBe('EAGAIN');

    const connecting = QmpClient.connect(socketPath, { timeoutMs: 30_000 });
    // The holder closes once the connect has met the full queue at least once.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await holder.close();
    const client = await connecting;
    try {
      expect(await client.execute<{ status: string }>('query-status')).toMatchObject({ status: 'prelaunch' });
    } finally {
      await client.close();
    }
  });

  it('says the queue stayed full, and what to do, when the holder never closes', async () => {
    fixture = prepareNamespace();
    await startPausedQemu(fixture);
    const socketPath = join(fixture.directory, 'qmp.sock');
    await Promise.all([1, 2].map(() => QmpClient.connect(socketPath, { timeoutMs: 300 }).catch(() => undefined)));
    const error = await QmpClient.connect(socketPath, { timeoutMs: 1_000 }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'VCNET_QMP_CONNECTION',
      message: `QMP handshake on ${socketPath}: QEMU's queue of QMP connections stayed full (connect EAGAIN) for 1000 ms`,
    });
    expect((error as { hint: string }).hint).toContain('QEMU serves one QMP client at a time');
  });
});
