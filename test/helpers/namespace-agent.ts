/**
 * vcnet's guest agent (the AgentService server with the netlink applier) serving a namespace that
 * plays the guest, and a client connected to it over a unix socket.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../../src/agent/client.js';
import { NetlinkApplier } from '../../src/agent/guest/netlink-applier.js';
import { createAgentServer } from '../../src/agent/server.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { makeNamespace, type TestNamespace } from './namespace.js';

export interface NamespaceAgent {
  client: AgentClient;
  /** Closes the client, the server, the netlink handle and the socket directory. */
  stop(): Promise<void>;
}

/** The agent serving `namespacePath` on a unix socket at `socketPath` (the client is the caller's). */
export async function serveNamespaceAgent(
  namespacePath: string,
  socketPath: string,
  /**
   * `sysfsRoot`: where the agent looks a PCI path up (default /sys, the host's: a host NIC at the
   * plugged NIC's path would then name a link of the namespace); a directory without one makes it
   * find the NIC by its MAC alone.
   */
  options: { linkAppearTimeoutMs: number; sysfsRoot?: string },
): Promise<{ stop(): Promise<void>; accepted(): number }> {
  const handle = NetlinkHandle.open(namespacePath);
  const agent = createAgentServer(
    new NetlinkApplier(handle, {
      linkAppearTimeoutMs: options.linkAppearTimeoutMs,
      ...(options.sysfsRoot !== undefined ? { sysfsRoot: options.sysfsRoot } : {}),
    }),
  );
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    agent.serve(socket);
  });
  const stop = async (): Promise<void> => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    handle.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
  } catch (error) {
    handle.close();
    throw error;
  }
  // accepted: how many clients connected so far (a test's proof that a command reached the agent).
  return { stop, accepted: () => accepted };
}

export async function startNamespaceAgent(
  namespacePath: string,
  options: { linkAppearTimeoutMs: number },
): Promise<NamespaceAgent> {
  const handle = NetlinkHandle.open(namespacePath);
  const agent = createAgentServer(new NetlinkApplier(handle, { linkAppearTimeoutMs: options.linkAppearTimeoutMs }));
  const socketDirectory = mkdtempSync(join(tmpdir(), 'vcnet-agent-'));
  const path = join(socketDirectory, 'agent.sock');
  const server = createServer((socket) => agent.serve(socket));
  let client: AgentClient | undefined;
  const stop = async (): Promise<void> => {
    client?.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    handle.close();
    rmSync(socketDirectory, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve) => server.listen(path, resolve));
    client = await AgentClient.connect(path, { deadlineMs: 2000, callTimeoutMs: 10_000 });
  } catch (error) {
    await stop();
    throw error;
  }
  return { client, stop };
}

/**
 * A namespace playing a booted guest: its NIC `veth-guest` (with `guestMac`) and the peer `veth-peer`
 * (up, with `peerMac` when given); `dad` sets IPv6 duplicate address detection as the guest kernel
 * has it (on by default in a real guest; off makes IPv6 addresses usable at once).
 */
export function guestLikeNamespace(
  prefix: string,
  options: { guestMac: string; peerMac?: string; dad?: boolean },
): TestNamespace {
  const namespace = makeNamespace(prefix);
  if (options.dad !== undefined) {
    const value = options.dad ? '1' : '0';
    namespace.exec('sysctl', [
      '-qw',
      `net.ipv6.conf.all.accept_dad=${value}`,
      `net.ipv6.conf.default.accept_dad=${value}`,
    ]);
  }
  namespace.exec('ip', [
    ...['link', 'add', 'veth-guest', 'address', options.guestMac, 'type', 'veth'],
    ...['peer', 'name', 'veth-peer', ...(options.peerMac ? ['address', options.peerMac] : [])],
  ]);
  namespace.exec('ip', ['link', 'set', 'veth-peer', 'up']);
  return namespace;
}
