/**
 * The library's handles work with `using` and `await using` (explicit resource management, Node ≥
 * 20.4's Symbol.dispose and Symbol.asyncDispose): leaving the block closes the netlink socket, the
 * QMP and agent connections, and stops a sandbox watch, as close() or stop() would, also when the
 * block throws. Taken through the package's entry point, as a library user writes it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { InterfaceSchema } from '../../src/agent/generated/types_pb.js';
import type { NetworkApplier } from '../../src/agent/network-applier.js';
import {
  AgentClient,
  createAgentServer,
  NetlinkHandle,
  QmpClient,
  type SandboxWatch,
  watchSandbox,
} from '../../src/index.js';
import { NetlinkClosedError } from '../../src/netlink/index.js';
import { stateDirectoryPerTest, vcnet } from '../helpers/cli.js';
import { fingerprint, makePod } from '../helpers/pod.js';
import { startFakeQmpServer } from '../unit/hypervisor/fake-qmp-server.js';

const stateDirectory = stateDirectoryPerTest('vcnet-disposal-');
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('using and await using on library handles', () => {
  it('closes a NetlinkHandle at the end of the block, also when the block throws', async () => {
    const { pod } = makePod();
    let kept: NetlinkHandle | undefined;
    {
      using handle = NetlinkHandle.open(pod.path);
      kept = handle;
      expect((await handle.linkByName('eth0')).name).toBe('eth0');
    }
    await expect(kept.linkByName('eth0')).rejects.toBeInstanceOf(NetlinkClosedError);

    const thrown = await (async () => {
      using handle = NetlinkHandle.open(pod.path);
      kept = handle;
      throw new Error('inside the block');
    })().catch((error: unknown) => error);
    expect((thrown as Error).message).toBe('inside the block');
    await expect(kept.linkByName('eth0')).rejects.toBeInstanceOf(NetlinkClosedError);
  });

  it('closes a QmpClient and an AgentClient at the end of the block', async () => {
    const qmpServer = await startFakeQmpServer();
    cleanups.push(() => qmpServer.close());
    let qmp: QmpClient | undefined;
    {
      await using client = await QmpClient.connect(qmpServer.socketPath);
      qmp = client;
      await client.execute('query-status');
    }
    await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'VCNET_QMP_CONNECTION' });

    const directory = mkdtempSync(join(tmpdir(), 'vcnet-disposal-agent-'));
    cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
    const path = join(directory, 'agent.sock');
    const listOnly = {
      listInterfaces: async () => [create(InterfaceSchema, { name: 'eth0' })],
    } as unknown as NetworkApplier;
    const agent = createAgentServer(listOnly);
    const server: Server = createServer((socket) => agent.serve(socket));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    let kept: AgentClient | undefined;
    {
      using client = await AgentClient.connect(path);
      kept = client;
      expect((await client.listInterfaces()).map((each) => each.name)).toEqual(['eth0']);
    }
    await expect(kept.listInterfaces()).rejects.toMatchObject({ code: 'VCNET_AGENT_STATUS' });
  });

  it('stops a sandbox watch at the end of the block', async () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attached = vcnet(['attach', '--sandbox', 'dispose', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attached.status, attached.stderr).toBe(0);
    let kept: SandboxWatch | undefined;
    {
      await using watching = await watchSandbox('dispose', { stateDirectory: stateDirectory(), debounceMs: 50 });
      kept = watching;
      cleanups.push(() => watching.stop());
    }
    // Stopped by the block (not by the sandbox going away): ended settles with no error.
    await expect(kept.ended).resolves.toBeUndefined();
    expect(vcnet(['detach', '--sandbox', 'dispose', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
