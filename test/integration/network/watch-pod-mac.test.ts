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
import { type ChildProcess, execFileSync } from 'node:child_process';
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';
import { fingerprint, linkMac, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';
import { relayTapToGuest } from '../../helpers/vm-stand-in.js';
import { collectNotices, watchForTest } from '../../helpers/watch.js';

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
});
