import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { QmpCommandError, QmpConnectionError, QmpTimeoutError } from '../../../src/hypervisor/errors.js';
import { defaultQmpConnectTimeoutMs, QmpClient, type QmpEvent } from '../../../src/hypervisor/qmp.js';
import { FAKE_GREETING, type QmpCommandMessage, startFakeQmpServer, useFakeQmp } from './fake-qmp-server.js';

const { connected } = useFakeQmp();

describe('QmpClient', () => {
  it('reads the greeting and negotiates capabilities before anything else', async () => {
    const { server, client } = await connected();
    expect(client.greeting.QMP.version.qemu.major).toBe(7);
    expect(server.commands[0]).toMatchObject({ execute: 'qmp_capabilities' });
    expect(server.commands[0]?.id).toMatch(/^vcnet-\d+$/);
  });

  it('matches replies to commands by id, whatever order they come back in', async () => {
    const { server, client } = await connected();
    const held: QmpCommandMessage[] = [];
    server.setHandler((command, connection) => {
      held.push(command);
      if (held.length === 2) {
        // Answer the second first.
        connection.reply(held[1] as QmpCommandMessage, { name: 'second' });
        connection.reply(held[0] as QmpCommandMessage, { name: 'first' });
      }
    });
    const first = client.execute('query-name');
    const second = client.execute('query-status', { verbose: true });
    await expect(first).resolves.toEqual({ name: 'first' });
    await expect(second).resolves.toEqual({ name: 'second' });
    expect(held[1]).toMatchObject({ execute: 'query-status', arguments: { verbose: true } });
    expect(held[0]?.id).not.toBe(held[1]?.id);
  });

  it('turns a QMP error into QmpCommandError with the class and description', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => connection.fail(command, 'DeviceNotFound', "Device 'x' not found"));
    const error = await client.execute('device_del', { id: 'x' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpCommandError);
    expect(error).toMatchObject({
      code: 'VCNET_QMP_COMMAND',
      command: 'device_del',
      errorClass: 'DeviceNotFound',
      description: "Device 'x' not found",
      value: { id: 'x' },
    });
  });

  it('times a command out without breaking the connection, and drops its late reply', async () => {
    const { server, client } = await connected();
    let late: QmpCommandMessage | undefined;
    server.setHandler((command, connection) => {
      if (command.execute === 'slow') late = command;
      else {
        if (late) connection.reply(late, 'too late');
        connection.reply(command, 'on time');
      }
    });
    const error = await client.execute('slow', undefined, { timeoutMs: 50 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpTimeoutError);
    expect(error).toMatchObject({ code: 'VCNET_QMP_TIMEOUT', command: 'slow', timeoutMs: 50 });
    await expect(client.execute('fast')).resolves.toBe('on time');
  });

  it('delivers events to listeners, to waitForEvent and to the async iterator', async () => {
    const { server, client } = await connected();
    server.setHandler((command, connection) => {
      connection.event('DEVICE_DELETED', { device: 'other' });
      connection.event('DEVICE_DELETED', { device: 'net0', path: '/machine/peripheral/net0' });
      connection.reply(command, {});
    });
    const seen: QmpEvent[] = [];
    client.on('event', (event) => seen.push(event));
    const iterator = client.events();
    const firstFromIterator = iterator.next();
    const waited = client.waitForEvent('DEVICE_DELETED', {
      timeoutMs: 2_000,
      predicate: (event) => event.data?.device === 'net0',
    });
    await client.execute('device_del', { id: 'net0' });
    await expect(waited).resolves.toMatchObject({ event: 'DEVICE_DELETED', data: { device: 'net0' } });
    expect(seen.map((event) => event.data?.device)).toEqual(['other', 'net0']);
    expect((await firstFromIterator).value).toMatchObject({ data: { device: 'other' } });
    await iterator.return(undefined);
  });

  it('bounds waitForEvent with a timeout and lets an AbortSignal cancel it', async () => {
    const { client } = await connected();
    const timedOut = await client.waitForEvent('NEVER', { timeoutMs: 30 }).catch((caught: unknown) => caught);
    expect(timedOut).toBeInstanceOf(QmpTimeoutError);
    const controller = new AbortController();
    const waiting = client.waitForEvent('NEVER', { timeoutMs: 60_000, signal: controller.signal });
    controller.abort(new Error('no longer needed'));
    await expect(waiting).rejects.toThrow('no longer needed');
    expect(client.listenerCount('event')).toBe(0);
  });

  it('15 waitForEvent calls on one signal add one abort listener to it (no MaxListenersExceededWarning); an abort ends them all', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const { client } = await connected();
      const controller = new AbortController();
      // A daemon's one shutdown signal, given to every wait.
      const waits = Array.from({ length: 15 }, () =>
        client
          .waitForEvent('NEVER', { timeoutMs: 60_000, signal: controller.signal })
          .catch((caught: unknown) => caught),
      );
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
      const reason = new Error('the daemon is shutting down');
      controller.abort(reason);
      expect(await Promise.all(waits)).toEqual(Array(15).fill(reason));
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
      expect(client.listenerCount('event')).toBe(0);
      // Node emits the warning on a later tick.
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(warnings.map((warning) => warning.name)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('rejects pending commands and ends the event stream when the connection drops', async () => {
    const { server, client } = await connected();
    server.setHandler((_command, connection) => connection.destroy());
    const iterator = client.events();
    const nextEvent = iterator.next();
    const error = await client.execute('query-status').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpConnectionError);
    expect((await nextEvent).done).toBe(true);
    expect(client.closed).toBe(true);
    await expect(client.execute('query-status')).rejects.toBeInstanceOf(QmpConnectionError);
  });

  it('close() rejects what is still waiting and is idempotent', async () => {
    const { server, client } = await connected();
    server.setHandler(() => {});
    const pending = client.execute('query-status').catch((caught: unknown) => caught);
    await client.close();
    await client.close();
    expect(await pending).toBeInstanceOf(QmpConnectionError);
  });

  it('refuses a peer that does not greet with QMP', async () => {
    const server = await startFakeQmpServer({ greeting: '{"hello": "world"}' });
    try {
      const error = await QmpClient.connect(server.socketPath, { timeoutMs: 2_000 }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(QmpConnectionError);
      expect((error as Error).message).toContain('not a QMP greeting');
    } finally {
      await server.close();
    }
  });

  it('reports a missing socket as QmpConnectionError with the path', async () => {
    const error = await QmpClient.connect('/nonexistent/vcnet/qmp.sock', { timeoutMs: 2_000 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(QmpConnectionError);
    expect(error).toMatchObject({ code: 'VCNET_QMP_CONNECTION', value: '/nonexistent/vcnet/qmp.sock' });
  });
});

/**
 * A unix socket server that takes connections and says only `greeting` (nothing at all when
 * undefined), as QEMU does to a second QMP client while another holds the socket.
 */
async function silentQmpServer(greeting?: string): Promise<{ socketPath: string; close: () => Promise<void> }> {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-silent-qmp-'));
  const socketPath = join(directory, 'qmp.sock');
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    if (greeting !== undefined) socket.write(`${greeting}\r\n`);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

describe('QmpClient handshake bound', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('says which step timed out, that QEMU serves one client at a time, and how to wait longer', async () => {
    const server = await silentQmpServer();
    try {
      const error = await QmpClient.connect(server.socketPath, { timeoutMs: 100 }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(QmpConnectionError);
      expect(error).toMatchObject({
        code: 'VCNET_QMP_CONNECTION',
        value: server.socketPath,
        message: `QMP handshake on ${server.socketPath}: no greeting from QEMU within 100 ms`,
      });
      expect((error as QmpConnectionError).hint).toContain('QEMU serves one QMP client at a time');
      expect((error as QmpConnectionError).hint).toContain(`ss -xp | grep ${server.socketPath}`);
      expect((error as QmpConnectionError).hint).toContain('VCNET_QMP_CONNECT_TIMEOUT=<seconds> (default 30)');
    } finally {
      await server.close();
    }
  });

  it("ends at an abort of its signal with the signal's reason, closing the connection it waited on", async () => {
    const server = await silentQmpServer();
    const controller = new AbortController();
    try {
      const connecting = QmpClient.connect(server.socketPath, { timeoutMs: 60_000, signal: controller.signal }).catch(
        (caught: unknown) => caught,
      );
      const reason = new Error('given up');
      controller.abort(reason);
      expect(await connecting).toBe(reason);
      expect(await QmpClient.connect(server.socketPath, { signal: controller.signal }).catch((caught) => caught)).toBe(
        reason,
      );
      await expect(QmpClient.connect(server.socketPath, { signal: 'soon' as never })).rejects.toThrow(/signal/);
    } finally {
      await server.close();
    }
  });

  it('names qmp_capabilities when QEMU greets but does not answer it (not "connection closed")', async () => {
    const server = await silentQmpServer(JSON.stringify(FAKE_GREETING));
    try {
      // The bound covers the greeting too: long enough that a loaded machine still delivers the
      // greeting within it (100 ms failed once with "no greeting" while other tests ran).
      const error = await QmpClient.connect(server.socketPath, { timeoutMs: 1000 }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(QmpConnectionError);
      expect((error as Error).message).toBe(
        `QMP handshake on ${server.socketPath}: no answer to qmp_capabilities from QEMU within 1000 ms`,
      );
    } finally {
      await server.close();
    }
  });

  it('waits 30 s by default, VCNET_QMP_CONNECT_TIMEOUT seconds when set, and refuses a bad value naming it', async () => {
    vi.stubEnv('VCNET_QMP_CONNECT_TIMEOUT', '');
    expect(defaultQmpConnectTimeoutMs()).toBe(30_000);
    vi.stubEnv('VCNET_QMP_CONNECT_TIMEOUT', '0.15');
    expect(defaultQmpConnectTimeoutMs()).toBe(150);
    const server = await silentQmpServer();
    try {
      const error = await QmpClient.connect(server.socketPath).catch((caught: unknown) => caught);
      expect((error as Error).message).toBe(
        `QMP handshake on ${server.socketPath}: no greeting from QEMU within 150 ms`,
      );
    } finally {
      await server.close();
    }
    for (const bad of ['soon', '0', '3601', '1e3']) {
      vi.stubEnv('VCNET_QMP_CONNECT_TIMEOUT', bad);
      expect(() => defaultQmpConnectTimeoutMs(), bad).toThrow(InvalidInputError);
      expect(() => defaultQmpConnectTimeoutMs(), bad).toThrow(/VCNET_QMP_CONNECT_TIMEOUT/);
    }
  });
});
