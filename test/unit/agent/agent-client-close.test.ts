/**
 * AgentClient.close() releases the connection's descriptor before it returns. A VM's agent port is
 * QEMU's chardev socket, which serves one client at a time: a connection closed only when the event
 * loop next runs kept the port from the next client, `vcnet add-iface` run synchronously right after
 * (spawnSync), whose UpdateInterface got no answer until its deadline (DEADLINE_EXCEEDED after 60 s).
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/agent/client.js';
import { InterfaceSchema } from '../../../src/agent/generated/types_pb.js';
import type { NetworkApplier } from '../../../src/agent/network-applier.js';
import { createAgentServer } from '../../../src/agent/server.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** The socket inodes this process holds a descriptor of, read synchronously (no event loop turn). */
function openSockets(): string[] {
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((target) => target.startsWith('socket:'));
}

const listOnly = {
  listInterfaces: async () => [create(InterfaceSchema, { name: 'eth0' })],
} as unknown as NetworkApplier;

describe('AgentClient.close', () => {
  it('closes its descriptor before it returns, after a call was answered', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-agent-close-'));
    const path = join(directory, 'agent.sock');
    const agent = createAgentServer(listOnly);
    const accepted: Socket[] = [];
    const server: Server = createServer((socket) => {
      accepted.push(socket);
      agent.serve(socket);
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    cleanups.push(() => {
      for (const socket of accepted) socket.destroy();
      server.close();
      rmSync(directory, { recursive: true, force: true });
    });

    const client = await AgentClient.connect(path);
    expect((await client.listInterfaces()).map((entry) => entry.name)).toEqual(['eth0']);
    const before = openSockets();
    client.close();
    // Checked at once, as a synchronous child process would find the port: the client's socket is gone.
    const after = openSockets();
    expect(before.filter((socket) => !after.includes(socket))).toHaveLength(1);
  });
});
