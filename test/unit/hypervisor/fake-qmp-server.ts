/**
 * A scripted QMP server on a unix socket in a temporary directory: sends the greeting, records
 * every command, and answers through a handler the test supplies (or not at all, to test
 * timeouts). Lets QMP client behaviour be tested without QEMU or root.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { QmpClient } from '../../../src/hypervisor/qmp.js';

export interface QmpCommandMessage {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: string;
}

export interface FakeQmpConnection {
  /** Sends a raw line (reply or event) to the client. */
  send(message: unknown): void;
  reply(command: QmpCommandMessage, value: unknown): void;
  fail(command: QmpCommandMessage, errorClass: string, description: string): void;
  event(name: string, data?: Record<string, unknown>): void;
  destroy(): void;
}

/** Answers (or deliberately does not answer) one command. The default handler answers {} to everything. */
export type FakeQmpHandler = (command: QmpCommandMessage, connection: FakeQmpConnection) => void;

export interface FakeQmpServer {
  socketPath: string;
  commands: QmpCommandMessage[];
  /** How many connections the server has taken: a probe that connects and sends nothing counts too. */
  connections(): number;
  setHandler(handler: FakeQmpHandler): void;
  close(): Promise<void>;
}

export const FAKE_GREETING = {
  QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'fake' }, capabilities: ['oob'] },
};

export async function startFakeQmpServer(options: { greeting?: string } = {}): Promise<FakeQmpServer> {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-fake-qmp-'));
  const socketPath = join(directory, 'qmp.sock');
  const commands: QmpCommandMessage[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  let handler: FakeQmpHandler = (command, connection) => connection.reply(command, {});
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const connection: FakeQmpConnection = {
      send: (message) => socket.write(`${typeof message === 'string' ? message : JSON.stringify(message)}\r\n`),
      reply: (command, value) => connection.send({ return: value, id: command.id }),
      fail: (command, errorClass, description) =>
        connection.send({ error: { class: errorClass, desc: description }, id: command.id }),
      event: (name, data) => connection.send({ event: name, data, timestamp: { seconds: 1, microseconds: 2 } }),
      destroy: () => socket.destroy(),
    };
    socket.write(`${options.greeting ?? JSON.stringify(FAKE_GREETING)}\r\n`);
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf('\n');
      while (newline !== -1) {
        const command = JSON.parse(buffered.slice(0, newline)) as QmpCommandMessage;
        buffered = buffered.slice(newline + 1);
        commands.push(command);
        if (command.execute === 'qmp_capabilities') connection.reply(command, {});
        else handler(command, connection);
        newline = buffered.indexOf('\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    commands,
    connections: () => connections,
    setHandler: (next) => {
      handler = next;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/**
 * A fake QMP server and a client connected to it per test, both closed after each test.
 * Call at the top of a test file.
 */
export function useFakeQmp(): { connected: () => Promise<{ server: FakeQmpServer; client: QmpClient }> } {
  // Every server and client a test made, closed whatever the test did to them (a client whose close
  // fails, or a test that connected twice, must not leave a socket directory in /tmp).
  const servers: FakeQmpServer[] = [];
  const clients: QmpClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close().catch(() => {});
    for (const server of servers.splice(0)) await server.close();
  });
  return {
    connected: async () => {
      const server = await startFakeQmpServer();
      servers.push(server);
      const client = await QmpClient.connect(server.socketPath, { timeoutMs: 2_000 });
      clients.push(client);
      return { server, client };
    },
  };
}
