/**
 * The agent through a hybrid vsock socket (Cloud Hypervisor, Firecracker): CONNECT <port>, OK, then
 * ttrpc. The VMM is a stand-in that forwards to vcnet's agent server after the handshake.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/agent/client.js';
import { AgentConnectError } from '../../../src/agent/errors.js';
import { InterfaceSchema } from '../../../src/agent/generated/types_pb.js';
import { parseAgentAddress } from '../../../src/agent/hybrid-vsock.js';
import type { NetworkApplier } from '../../../src/agent/network-applier.js';
import { createAgentServer } from '../../../src/agent/server.js';
import { InvalidInputError } from '../../../src/errors.js';
import { serveHybridVsock } from '../../helpers/hybrid-vsock-server.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function directory(): string {
  const made = mkdtempSync(join(tmpdir(), 'vcnet-hvsock-'));
  cleanups.push(() => rmSync(made, { recursive: true, force: true }));
  return made;
}

const listOnly = {
  listInterfaces: async () => [create(InterfaceSchema, { name: 'eth0' })],
} as unknown as NetworkApplier;

/** vcnet's agent server on `<dir>/agent.sock` and the hybrid vsock stand-in on `<dir>/vsock.sock`. */
async function guestBehindVsock() {
  const dir = directory();
  const agentPath = join(dir, 'agent.sock');
  const agent = createAgentServer(listOnly);
  const server: Server = createServer((socket) => agent.serve(socket));
  await new Promise<void>((resolve) => server.listen(agentPath, resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const vsockPath = join(dir, 'vsock.sock');
  const vmm = await serveHybridVsock(vsockPath, agentPath);
  cleanups.push(() => vmm.stop());
  return { vmm, vsockPath };
}

describe('agent addresses', () => {
  it('reads a socket path, hvsock://PATH:PORT, and hvsock://PATH with the Kata port', () => {
    expect(parseAgentAddress('/run/agent.sock')).toEqual({ kind: 'unix', path: '/run/agent.sock' });
    expect(parseAgentAddress('hvsock:///run/vc/clh.sock:1024')).toEqual({
      kind: 'hvsock',
      path: '/run/vc/clh.sock',
      port: 1024,
    });
    expect(parseAgentAddress('hvsock:///run/vc/kata.hvsock')).toEqual({
      kind: 'hvsock',
      path: '/run/vc/kata.hvsock',
      port: 1024,
    });
  });

  it.each(['hvsock://', 'hvsock://:1024', 'hvsock:///x.sock:', 'hvsock:///x.sock:0', 'hvsock:///x.sock:port', ''])(
    'refuses %j naming the field and the form',
    (address) => {
      const error = (() => {
        try {
          return parseAgentAddress(address, '--agent');
        } catch (caught) {
          return caught;
        }
      })();
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as Error).message).toContain('invalid --agent');
      expect((error as Error).message).toContain(JSON.stringify(address));
    },
  );
});

describe('AgentClient.connect through hybrid vsock', () => {
  it('sends CONNECT with the port, then speaks ttrpc to the guest agent', async () => {
    const { vmm, vsockPath } = await guestBehindVsock();
    const client = await AgentClient.connect(`hvsock://${vsockPath}:1024`, { deadlineMs: 5000 });
    cleanups.push(() => client.close());
    expect((await client.listInterfaces({ timeoutMs: 5000 })).map((i) => i.name)).toEqual(['eth0']);
    expect(vmm.lines).toEqual(['CONNECT 1024']);
  });

  it('tries again while the VMM closes the stream (nothing listens on the port yet)', async () => {
    const { vmm, vsockPath } = await guestBehindVsock();
    vmm.closeNext = 3;
    const client = await AgentClient.connect(`hvsock://${vsockPath}:1024`, { deadlineMs: 5000, retryIntervalMs: 20 });
    cleanups.push(() => client.close());
    expect((await client.listInterfaces({ timeoutMs: 5000 })).map((i) => i.name)).toEqual(['eth0']);
    expect(vmm.lines).toHaveLength(4);
  });

  it('fails at once, saying what it received, when the answer is not OK', async () => {
    const { vmm, vsockPath } = await guestBehindVsock();
    vmm.reply = 'HTTP/1.1 400 Bad Request\r\n\r\n';
    const error = await AgentClient.connect(`hvsock://${vsockPath}:1024`, { deadlineMs: 5000 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(AgentConnectError);
    expect((error as AgentConnectError).attempts).toBe(1);
    expect((error as Error).message).toContain(`hvsock://${vsockPath}:1024`);
    expect((error as Error).message).toContain(
      'expected "OK <port>" after CONNECT 1024, received "HTTP/1.1 400 Bad Request"',
    );
    expect((error as AgentConnectError).hint).toContain('vsock');
  });

  it('gives up when no answer comes in the handshake timeout', async () => {
    const dir = directory();
    const path = join(dir, 'silent.sock');
    // Takes the connection, reads CONNECT, answers nothing.
    let connections = 0;
    const silent = createServer((socket) => {
      connections++;
      socket.on('data', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(path, resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    const error = await AgentClient.connect(`hvsock://${path}:1024`, {
      deadlineMs: 5000,
      handshakeTimeoutMs: 200,
    }).catch((caught: unknown) => caught);
    silent.close();
    expect(error).toBeInstanceOf(AgentConnectError);
    // The handshake's 200 ms bound the wait, not the 5 s deadline, and silence is not retried: one
    // connection, where retrying until the deadline would have made several.
    expect((error as Error).message).toContain('no answer to CONNECT 1024 in 200 ms');
    expect(connections).toBe(1);
  });

  it('at the deadline, names why the attempts failed, not that the last one ran out of the time left', async () => {
    const dir = directory();
    const path = join(dir, 'closing-then-silent.sock');
    // Closes the stream after CONNECT twice (no listener yet), then takes one and answers nothing:
    // that attempt's handshake gets what is left of the deadline and times out at it.
    let connections = 0;
    const vmm = createServer((socket) => {
      connections++;
      socket.once('data', () => {
        if (connections <= 2) socket.destroy();
      });
    });
    await new Promise<void>((resolve) => vmm.listen(path, resolve));
    cleanups.push(() => new Promise<void>((resolve) => vmm.close(() => resolve())));
    const error = await AgentClient.connect(`hvsock://${path}:1024`, {
      // The third connection must come before the deadline: 800 ms is three connects, two closes and
      // two pauses on an idle machine, not on a loaded one (as in the test below).
      deadlineMs: 4_000,
      retryIntervalMs: 20,
    }).catch((caught: unknown) => caught);
    vmm.close();
    expect(error).toBeInstanceOf(AgentConnectError);
    expect(connections).toBeGreaterThan(2);
    expect((error as Error).message).toMatch(/nothing listens on vsock port 1024 yet/);
    expect((error as Error).message).not.toContain('no answer to CONNECT');
  });

  it('gives up at the deadline while the VMM keeps closing the stream', async () => {
    const { vmm, vsockPath } = await guestBehindVsock();
    vmm.closeNext = 1_000_000;
    const error = await AgentClient.connect(`hvsock://${vsockPath}:1024`, {
      // Long enough for a few attempts on a loaded machine: 300 ms once ended before the first close,
      // and 1.5 s once gave up inside the first attempt while five test runs shared two cores.
      deadlineMs: 4_000,
      retryIntervalMs: 20,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AgentConnectError);
    expect((error as Error).message).toMatch(/nothing listens on vsock port 1024 yet/);
    expect((error as AgentConnectError).attempts).toBeGreaterThan(2);
  });
});
