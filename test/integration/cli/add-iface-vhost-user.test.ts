/**
 * add-iface finds a vhost-user socket as Kata's add-iface does: by the Interface's IPAddresses, the
 * addresses the guest NIC gets (Sandbox.AddInterface → generateNetInfo → findVhostUserNetSocketPath,
 * /tmp/vhostuser_<ip>/vhu.sock), not by the addresses the pod link has. Real namespaces, a real unix
 * socket listening at Kata's layout (the store is the sandbox's --vhost-user-store), no VM.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

/** A listening unix socket at <store>/vhostuser_<address>/vhu.sock, as a vhost-user switch makes it. */
async function listenAt(store: string, address: string): Promise<Server> {
  mkdirSync(join(store, `vhostuser_${address}`), { recursive: true });
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(join(store, `vhostuser_${address}`, 'vhu.sock'), resolve);
  });
  return server;
}

/**
 * A sandbox attached over a pod whose second link, eth7 (a veth), has the address 10.77.0.9; the
 * add-iface request (Kata's Interface JSON, type "veth" as Kata's users write it) asks for 10.77.0.2
 * (or `requested`).
 */
function sandboxWithSecondLink(
  store: string,
  requested: { family: number; address: string; mask: string } = { family: 0, address: '10.77.0.2', mask: '24' },
) {
  const { pod } = makePod();
  const before = fingerprint(pod);
  const attached = vcnet([
    'attach',
    '--sandbox',
    'vu7',
    '--netns',
    pod.path,
    '--vhost-user-store',
    store,
    '--state-dir',
    stateDirectory(),
  ]);
  expect(attached.status, attached.stderr).toBe(0);
  pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
  pod.exec('ip', ['addr', 'add', '10.77.0.9/24', 'dev', 'eth7']);
  const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth7')[0]?.address ?? '';
  const request = join(stateDirectory(), 'add-iface.json');
  writeFileSync(
    request,
    JSON.stringify({
      device: 'eth7',
      name: 'eth7',
      IPAddresses: [requested],
      mtu: 1500,
      hwAddr: mac,
      type: 'veth',
    }),
  );
  // After del-iface: detach leaves the namespace as it was (a failed test leaves it to the namespace cleanup).
  const finish = () => {
    pod.exec('ip', ['link', 'del', 'eth7']);
    expect(vcnet(['detach', '--sandbox', 'vu7', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  };
  return { pod, request, finish };
}

describe('add-iface and vhost-user sockets', () => {
  it('makes a vhost-user endpoint when the socket is at a requested address, whatever type says', async () => {
    const store = join(stateDirectory(), 'store');
    const server = await listenAt(store, '10.77.0.2');
    try {
      const { pod, request, finish } = sandboxWithSecondLink(store);
      const added = vcnet(['add-iface', 'vu7', request, '--state-dir', stateDirectory()]);
      expect(added.status, added.stderr).toBe(0);
      expect(JSON.parse(added.stdout)).toMatchObject({ name: 'eth7', type: 'vhost-user' });
      expect(added.stderr).toContain('vhost-user');
      // The switch's socket carries the NIC: no tap made for it.
      expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
      const listed = JSON.parse(vcnet(['list-ifaces', 'vu7', '--state-dir', stateDirectory(), '--json']).stdout);
      expect(listed.find((entry: { name: string }) => entry.name === 'eth7')).toMatchObject({ type: 'vhost-user' });
      const removed = vcnet(['del-iface', 'vu7', request, '--state-dir', stateDirectory()]);
      expect(removed.status, removed.stderr).toBe(0);
      finish();
    } finally {
      server.close();
    }
  });

  it('looks for the socket by a requested address as Kata writes it, however the request wrote it', async () => {
    // Kata parses each address (netlink.ParseAddr) and names the directory with Go's net.IP text:
    // lower case, the longest run of zero groups compressed.
    const store = join(stateDirectory(), 'store');
    const server = await listenAt(store, 'fd00:77::2');
    try {
      const { request, finish } = sandboxWithSecondLink(store, { family: 1, address: 'FD00:77:0:0::2', mask: '64' });
      const added = vcnet(['add-iface', 'vu7', request, '--state-dir', stateDirectory()]);
      expect(added.status, added.stderr).toBe(0);
      expect(JSON.parse(added.stdout)).toMatchObject({ name: 'eth7', type: 'vhost-user' });
      const removed = vcnet(['del-iface', 'vu7', request, '--state-dir', stateDirectory()]);
      expect(removed.status, removed.stderr).toBe(0);
      finish();
    } finally {
      server.close();
    }
  });

  it("takes the link as the veth it is when the socket is at the link's own address only", async () => {
    const store = join(stateDirectory(), 'store');
    const server = await listenAt(store, '10.77.0.9');
    try {
      const { pod, request, finish } = sandboxWithSecondLink(store);
      const added = vcnet(['add-iface', 'vu7', request, '--state-dir', stateDirectory()]);
      expect(added.status, added.stderr).toBe(0);
      expect(JSON.parse(added.stdout)).toMatchObject({ name: 'eth7', type: 'virtual' });
      expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');
      const removed = vcnet(['del-iface', 'vu7', request, '--state-dir', stateDirectory()]);
      expect(removed.status, removed.stderr).toBe(0);
      finish();
    } finally {
      server.close();
    }
  });
});
