/** Finding the agent's port and a NIC's PCI path in (fake) sysfs; port sessions over a fake device. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentPortNotFoundError } from '../../../src/agent/errors.js';
import { KeyValueSchema, RequestSchema, ResponseSchema } from '../../../src/agent/generated/ttrpc_pb.js';
import { findAgentPort, waitForAgentPort } from '../../../src/agent/guest/agent-port.js';
import { linkNameAtPciPath } from '../../../src/agent/guest/pci-path.js';
import { type PortIo, servePortSessions } from '../../../src/agent/guest/port-session.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../../src/agent/ttrpc/frame.js';
import { TtrpcServer } from '../../../src/agent/ttrpc/server.js';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function fakeSysfs(files: Record<string, string>, directoriesToMake: string[] = []): string {
  const root = mkdtempSync(join(tmpdir(), 'vcnet-sysfs-'));
  directories.push(root);
  for (const directory of directoriesToMake) mkdirSync(join(root, directory), { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

describe('findAgentPort', () => {
  it('picks the port whose name is agent.channel.0', () => {
    const sysfs = fakeSysfs({
      'class/virtio-ports/vport1p0/name': 'console.0\n',
      'class/virtio-ports/vport2p1/name': 'agent.channel.0\n',
    });
    expect(findAgentPort({ sysfsRoot: sysfs, deviceRoot: '/dev' })).toBe('/dev/vport2p1');
    expect(findAgentPort({ sysfsRoot: sysfs, portName: 'console.0' })).toBe('/dev/vport1p0');
    expect(findAgentPort({ sysfsRoot: sysfs, portName: 'other' })).toBeUndefined();
  });

  it('waits for the port, then says what it looked for', async () => {
    const sysfs = fakeSysfs({});
    const error = await waitForAgentPort({ sysfsRoot: sysfs, timeoutMs: 150 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentPortNotFoundError);
    expect((error as Error).message).toContain('agent.channel.0');

    const devices = fakeSysfs({ vport3p1: '' });
    setTimeout(() => {
      mkdirSync(join(sysfs, 'class/virtio-ports/vport3p1'), { recursive: true });
      writeFileSync(join(sysfs, 'class/virtio-ports/vport3p1/name'), 'agent.channel.0\n');
    }, 120);
    expect(await waitForAgentPort({ sysfsRoot: sysfs, deviceRoot: devices, timeoutMs: 3000 })).toBe(
      join(devices, 'vport3p1'),
    );
  });
});

describe('linkNameAtPciPath', () => {
  it('follows a PCI path through a bridge to the virtio-net interface', () => {
    const sysfs = fakeSysfs({}, [
      'devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio3/net/eth1',
      'devices/pci0000:00/0000:00:03.0/virtio0/net/eth0',
      'devices/pci0000:00/0000:00:04.0/net/ens4',
    ]);
    expect(linkNameAtPciPath('02/00', sysfs)).toBe('eth1');
    expect(linkNameAtPciPath('03', sysfs)).toBe('eth0');
    expect(linkNameAtPciPath('04', sysfs)).toBe('ens4');
    expect(linkNameAtPciPath('05', sysfs)).toBeUndefined();
    expect(linkNameAtPciPath('02/01', sysfs)).toBeUndefined();
  });
});

/** A fake port device: the test plays the host, connecting and disconnecting. */
class FakePort implements PortIo {
  hostConnected = false;
  private inbound: Buffer[] = [];
  private waiting: (() => void) | undefined;
  readonly outbound: Buffer[] = [];

  async read(buffer: Buffer): Promise<number> {
    for (;;) {
      const chunk = this.inbound.shift();
      if (chunk) {
        chunk.copy(buffer);
        return chunk.length;
      }
      // As virtio_console: end of file while the host is away, otherwise block for data.
      if (!this.hostConnected) return 0;
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
    }
  }
  async write(data: Uint8Array): Promise<void> {
    this.outbound.push(Buffer.from(data));
  }
  async close(): Promise<void> {}
  hostSends(data: Buffer): void {
    this.inbound.push(data);
    this.wake();
  }
  hostDisconnects(): void {
    this.hostConnected = false;
    this.wake();
  }
  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.();
  }
}

describe('servePortSessions', () => {
  it('serves a session per host connection, each with stream ids from 1 again', async () => {
    const port = new FakePort();
    const server = new TtrpcServer().register(
      { service: 's', method: 'M', input: KeyValueSchema, output: KeyValueSchema },
      async (request) => ({ key: request.key }),
    );
    const stop = new AbortController();
    let sessions = 0;
    const serving = servePortSessions(
      port,
      (session) => {
        sessions += 1;
        return server.serve(session).done;
      },
      { idleMs: 5, signal: stop.signal },
    );
    const request = (key: string) =>
      encodeFrame(
        1,
        FrameType.REQUEST,
        0,
        toBinary(
          RequestSchema,
          create(RequestSchema, {
            service: 's',
            method: 'M',
            payload: toBinary(KeyValueSchema, create(KeyValueSchema, { key })),
          }),
        ),
      );
    const answers = () => {
      const decoder = new FrameDecoder();
      return decoder.push(Buffer.concat(port.outbound)).map((frame) => {
        if (frame.kind !== 'frame') throw new Error('oversized');
        const response = fromBinary(ResponseSchema, frame.payload);
        return [frame.header.streamId, response.status?.code ?? 0, fromBinary(KeyValueSchema, response.payload).key];
      });
    };

    await sleep(30); // nobody connected: reads see end of file and are retried
    port.hostConnected = true;
    port.hostSends(request('first'));
    await sleep(30);
    port.hostDisconnects();
    await sleep(30);
    port.hostConnected = true;
    port.hostSends(request('second'));
    await sleep(30);
    expect(answers()).toEqual([
      [1, 0, 'first'],
      [1, 0, 'second'],
    ]);
    expect(sessions).toBe(2);
    stop.abort();
    port.hostDisconnects();
    await serving;
  });
});
