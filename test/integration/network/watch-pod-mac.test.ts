/**
 * A tcfilter pod link whose MAC someone changes while it is attached (the tuning plugin after
 * vcnet-cni, `ip link set eth0 address ...`). The guest NIC was plugged with the link's MAC, and a
 * NIC's MAC is fixed once plugged (Kata reads it at attach only). What traffic does, seen through a
 * guest stand-in (a namespace whose tap, with the guest MAC, is relayed to vcnet's tap as a VMM
 * would): a peer that learnt the address by ARP keeps the guest's MAC (the guest answers ARP, not the
 * pod link) and still reaches the VM; a frame sent to the link's new MAC goes through the redirect
 * and is dropped by the guest as not its own. watch used to say nothing; it now says what changed,
 * what the guest keeps and what to do, and says when the link has the guest's MAC again.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createNamespace, deleteNamespace } from '../../../src/netns/namespace.js';
import { setWatchVmPollTestHook } from '../../../src/sandbox/sandbox-watch.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { makeNamespace, namespaceView } from '../../helpers/namespace.js';
import { forgetNamespaceOwner, NAMESPACE_PREFIX, recordNamespaceOwner } from '../../helpers/owner-process.js';
import { fingerprint, linkMac, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { relayTapToGuest } from '../../helpers/vm-stand-in.js';
import { collectNotices, watchForTest } from '../../helpers/watch.js';
import { startFakeQmpServer } from '../../unit/hypervisor/fake-qmp-server.js';

const cleanup = cleanupAfterEach();
const NEW_MAC = '02:aa:00:00:00:02';

/** Whether `count` pings from `node` to the pod's address all get an answer. */
function reaches(node: ReturnType<typeof makePod>['node']): boolean {
  try {
    node.exec('ping', ['-c', '2', '-W', '2', '10.200.0.2']);
    return true;
  } catch {
    return false;
  }
}

describe('vcnet watch: a tcfilter pod link whose MAC changes', () => {
  it('keeps the guest MAC for ARP peers, drops what is sent to the new MAC, and says so', async () => {
    const stateDir = cleanup.directory('vcnet-watch-pod-mac-');
    const { pod, node } = makePod();
    // The kernel drops a link's permanent neighbours when its MAC changes: a change the guest is told
    // of (updated), which is not what this is about.
    pod.exec('ip', ['neigh', 'flush', 'dev', 'eth0', 'nud', 'permanent']);
    const before = fingerprint(pod);
    const guestMac = linkMac(pod);
    const attach = vcnet(['attach', '--sandbox', 'm1', '--netns', pod.path, '--state-dir', stateDir]);
    expect(attach.status, attach.stderr).toBe(0);
    cleanup.defer(() => vcnet(['detach', '--sandbox', 'm1', '--state-dir', stateDir]));

    const guest = makeNamespace('guest');
    const relay: ChildProcess = await relayTapToGuest(pod.path, 'tap0_kata', guest.path, 'eth0');
    cleanup.defer(() => relay.kill('SIGKILL'));
    guest.exec('ip', ['link', 'set', 'eth0', 'address', guestMac]);
    guest.exec('ip', ['addr', 'add', '10.200.0.2/24', 'dev', 'eth0']);
    guest.exec('ip', ['link', 'set', 'eth0', 'up']);
    expect(reaches(node)).toBe(true);

    const notices = collectNotices(cleanup, 'watch');
    const said = () => notices.map((notice) => notice.message);
    const { watching, applied } = await watchForTest(cleanup, 'm1', { stateDirectory: stateDir });

    pod.exec('ip', ['link', 'set', 'eth0', 'address', NEW_MAC]);
    // Pasted on the host, the command must act in the pod's namespace (a bare `ip` would set the host's eth0).
    const setBack = `ip -n ${basename(pod.path)} link set eth0 address ${guestMac}`;
    await until(() => notices.length > 0, 'the notice of the changed MAC');
    expect(said()).toEqual([
      `sandbox m1: eth0's MAC changed to ${NEW_MAC}, but the VM's NIC eth0 keeps ${guestMac}, the MAC it was plugged with (a NIC's MAC is fixed once plugged): peers that learn it by ARP or neighbour discovery still reach the VM, as the guest answers with ${guestMac}; frames sent to ${NEW_MAC} (a static neighbour or bridge fdb entry, or a CNI result read since) reach the VM and are dropped by its NIC as not its own. Set eth0's MAC back (\`${setBack}\`), or plug the NIC again with the new one: \`vcnet del-iface m1 --state-dir ${stateDir} FILE\` then \`vcnet add-iface m1 --state-dir ${stateDir} FILE\`, FILE being {"name": "eth0"}`,
    ]);
    expect(applied).toEqual([
      {
        added: [],
        removed: [],
        updated: [],
        failed: [],
        macChanges: [{ endpoint: 'eth0', link: 'eth0', guestMac, podMac: NEW_MAC, message: said()[0] }],
      },
    ]);

    // The node's neighbour entry is the guest's MAC (the guest answered its ARP): still reached.
    expect(reaches(node)).toBe(true);
    // A peer that sends to the pod link's new MAC: through the redirect, and dropped by the guest.
    node.exec('ip', ['neigh', 'replace', '10.200.0.2', 'lladdr', NEW_MAC, 'dev', 'veth0', 'nud', 'permanent']);
    expect(reaches(node)).toBe(false);
    node.exec('ip', ['neigh', 'del', '10.200.0.2', 'dev', 'veth0']);
    expect(reaches(node)).toBe(true);

    // The notice's own command, run as a user pasting it on the host would.
    execFileSync('sh', ['-c', setBack]);
    await until(() => notices.length > 1, 'the notice of the MAC set back');
    expect(said()[1]).toBe(
      `sandbox m1: eth0 has the MAC of the VM's NIC eth0 again (${guestMac}): frames sent to it reach the VM`,
    );
    expect(applied.at(-1)?.macChanges).toEqual([
      { endpoint: 'eth0', link: 'eth0', guestMac, podMac: guestMac, message: said()[1] },
    ]);
    await watching.stop();
    relay.kill('SIGKILL');
    expect(vcnet(['detach', '--sandbox', 'm1', '--state-dir', stateDir]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  }, 60_000);

  // The pod deleted and a namespace of the same name made (a pod re-created), the VM still running:
  // the watch goes on through the namespace it holds. The command it quotes must act there, where
  // the watch saw the MAC change, never on the eth0 of the namespace now at the recorded path.
  it('quotes a command that acts in the watched namespace once its path names another', async () => {
    const stateDir = cleanup.directory('vcnet-watch-pod-mac-');
    const { pod } = makePod();
    pod.exec('ip', ['neigh', 'flush', 'dev', 'eth0', 'nud', 'permanent']);
    const guestMac = linkMac(pod);
    const qmp = await startFakeQmpServer();
    cleanup.defer(() => qmp.close());
    const agent = join(stateDir, 'agent.sock');
    const attach = vcnet([
      'attach',
      '--sandbox',
      'm2',
      '--netns',
      pod.path,
      '--state-dir',
      stateDir,
      '--qmp',
      qmp.socketPath,
      '--agent',
      agent,
    ]);
    expect(attach.status, attach.stderr).toBe(0);
    cleanup.defer(() => vcnet(['detach', '--sandbox', 'm2', '--state-dir', stateDir]));
    // What keeps the pod's namespace once its name goes, and the way in for the test.
    const holder = spawn('ip', ['netns', 'exec', pod.name, 'sh', '-c', 'echo ready; exec sleep 600'], {
      stdio: 'pipe',
    });
    cleanup.defer(() => holder.kill('SIGKILL'));
    await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
    const inHeld = (args: string[]) =>
      execFileSync('nsenter', [`--net=/proc/${holder.pid}/ns/net`, 'ip', ...args], { encoding: 'utf8' });
    const heldMac = () =>
      (JSON.parse(inHeld(['-j', 'link', 'show', 'eth0'])) as Array<{ address: string }>)[0]!.address;

    setWatchVmPollTestHook(() => 50);
    cleanup.defer(() => setWatchVmPollTestHook(undefined));
    const notices = collectNotices(cleanup, 'watch');
    await watchForTest(cleanup, 'm2', { stateDirectory: stateDir });
    pod.delete();
    recordNamespaceOwner(NAMESPACE_PREFIX, pod.name);
    const replacement = namespaceView(pod.name, createNamespace(pod.name));
    cleanup.defer(() => {
      deleteNamespace(replacement.path);
      forgetNamespaceOwner(NAMESPACE_PREFIX, pod.name);
    });
    replacement.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0-peer']);
    const replacementMac = linkMac(replacement);
    await until(
      () => notices.some((notice) => notice.message.includes('names another namespace now')),
      'the watch to see the path taken',
    );

    inHeld(['link', 'set', 'eth0', 'address', NEW_MAC]);
    await until(() => notices.some((notice) => notice.message.includes('MAC changed')), 'the MAC notice');
    const notice = notices.find((entry) => entry.message.includes('MAC changed'))!.message;
    const setBack = /Set eth0's MAC back \(`([^`]+)`\)/.exec(notice)?.[1];
    expect(setBack, notice).toBeDefined();
    const pasted = spawnSync('sh', ['-c', setBack!], { encoding: 'utf8' });
    expect(pasted.status, `${setBack}: ${pasted.stderr}`).toBe(0);
    expect(linkMac(replacement)).toBe(replacementMac);
    expect(heldMac()).toBe(guestMac);
  }, 60_000);
});
