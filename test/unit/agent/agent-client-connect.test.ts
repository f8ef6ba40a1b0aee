/** AgentClient.connect: retries a socket that is not there yet, gives up at the deadline. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/agent/client.js';
import { AgentConnectError } from '../../../src/agent/errors.js';
import { InterfaceSchema } from '../../../src/agent/generated/types_pb.js';
import type { NetworkApplier } from '../../../src/agent/network-applier.js';
import { createAgentServer } from '../../../src/agent/server.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function socketPath(): string {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-agent-'));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return join(directory, 'agent.sock');
}

const listOnly = {
  listInterfaces: async () => [create(InterfaceSchema, { name: 'eth0' })],
} as unknown as NetworkApplier;

describe('AgentClient.connect', () => {
  it('waits for the socket to appear, then talks to the agent', async () => {
    const path = socketPath();
    let server: Server | undefined;
    const agent = createAgentServer(listOnly);
    const timer = setTimeout(() => {
      server = createServer((socket) => agent.serve(socket)).listen(path);
    }, 300);
    cleanups.push(() => {
      clearTimeout(timer);
      server?.close();
    });
    // No socket for 300 ms: a connect that did not wait and retry would reject (ENOENT) instead.
    const client = await AgentClient.connect(path, { deadlineMs: 5000, retryIntervalMs: 50 });
    cleanups.push(() => client.close());
    expect(server).toBeDefined();
    expect((await client.listInterfaces()).map((i) => i.name)).toEqual(['eth0']);
  });

  it('gives up at the deadline with AgentConnectError naming the socket', async () => {
    const path = socketPath();
    // Room for more than two attempts on a loaded machine: with 300 ms, two 50 ms pauses stretched
    // by a busy event loop once left time for only two.
    const error = await AgentClient.connect(path, { deadlineMs: 2_000, retryIntervalMs: 50 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentConnectError);
    expect(error).toMatchObject({ code: 'VCNET_AGENT_CONNECT', socketPath: path });
    expect((error as AgentConnectError).attempts).toBeGreaterThan(2);
    expect((error as Error).message).toContain('ENOENT');
    // A missing socket may come: the deadline ended the tries (a caller may wait on, withSandboxAndVm does).
    expect((error as AgentConnectError).deadlineReached).toBe(true);
  });

  it('says a failure no retry changes, and a cancel, did not reach the deadline', async () => {
    // A path through a regular file: ENOTDIR, which no retry changes.
    const file = socketPath();
    writeFileSync(file, '');
    const fatal = await AgentClient.connect(join(file, 'agent.sock'), { deadlineMs: 5000 }).catch((e: unknown) => e);
    expect(fatal).toBeInstanceOf(AgentConnectError);
    expect((fatal as AgentConnectError).reason).toBe('ENOTDIR');
    expect((fatal as AgentConnectError).attempts).toBe(1);
    expect((fatal as AgentConnectError).deadlineReached).toBe(false);

    const controller = new AbortController();
    const cancelled = AgentClient.connect(socketPath(), {
      deadlineMs: 5000,
      retryIntervalMs: 50,
      signal: controller.signal,
    }).catch((e: unknown) => e);
    controller.abort(new Error('stop'));
    // Cancelled during an attempt or between two: either way not the deadline's doing.
    const error = await cancelled;
    expect(error).toBeInstanceOf(AgentConnectError);
    expect((error as AgentConnectError).deadlineReached).toBe(false);
  });
});
