/** `vcnet list`'s text: the table (aligned, header only when empty) and the notes under it. */
import { describe, expect, it } from 'vitest';
import { listingText } from '../../../src/cli/commands/list.js';
import type { SandboxListing } from '../../../src/sandbox/list.js';

const attached: SandboxListing = {
  id: 'pod-a',
  kind: 'sandbox',
  state: 'attached',
  namespacePath: '/var/run/netns/pod-a',
  endpoints: [
    { guestName: 'eth0', podLink: 'eth0', type: 'virtual', model: 'tcfilter', device: 'tap0_kata' },
    { guestName: 'net1', podLink: 'net1', type: 'macvlan', model: 'macvtap' },
  ],
  hypervisor: 'qemu',
  stateDirectory: '/run/vcnet/sandboxes',
  file: '/run/vcnet/sandboxes/pod-a/state.json',
};

const unfinished: SandboxListing = {
  id: 'ctr/eth0',
  kind: 'cni',
  containerId: 'ctr',
  interfaceName: 'eth0',
  state: 'unfinished',
  detail: 'the attach or undo of eth0 did not finish',
  hint: "the runtime's CNI DEL of container ctr (interface eth0) undoes it",
  namespacePath: '/proc/42/ns/net',
  endpoints: [{ guestName: 'eth0', podLink: 'eth0', type: 'virtual', model: 'pending' }],
  stateDirectory: '/run/vcnet/cni',
  file: '/run/vcnet/cni/ctr/interfaces/eth0/state.json',
};

const unreadable: SandboxListing = {
  id: 'cut',
  kind: 'sandbox',
  state: 'unreadable',
  detail: 'state file /s/cut/state.json is not valid JSON',
  endpoints: [],
  stateDirectory: '/s',
  file: '/s/cut/state.json',
  error: { code: 'VCNET_STATE_INVALID', message: 'state file /s/cut/state.json is not valid JSON' },
};

describe('vcnet list text', () => {
  it('prints only the header when nothing is recorded, as podman ps does', () => {
    expect(listingText([], { stateDirectories: false })).toEqual(['SANDBOX  STATE  ENDPOINTS  HYPERVISOR  NAMESPACE']);
    expect(listingText([], { stateDirectories: true })).toEqual([
      'SANDBOX  STATE  ENDPOINTS  HYPERVISOR  NAMESPACE  STATE DIRECTORY',
    ]);
  });

  it('aligns the columns, and notes each record that is not attached with why and what to run', () => {
    const lines = listingText([attached, unfinished, unreadable], { stateDirectories: true });
    expect(lines).toEqual([
      'SANDBOX   STATE       ENDPOINTS                                                HYPERVISOR  NAMESPACE             STATE DIRECTORY',
      'pod-a     attached    eth0<-eth0 virtual tcfilter, net1<-net1 macvlan macvtap  qemu        /var/run/netns/pod-a  /run/vcnet/sandboxes',
      'ctr/eth0  unfinished  eth0<-eth0 virtual pending                               -           /proc/42/ns/net       /run/vcnet/cni',
      'cut       unreadable  -                                                        -           -                     /s',
      '',
      "ctr/eth0: unfinished: the attach or undo of eth0 did not finish; the runtime's CNI DEL of container ctr (interface eth0) undoes it",
      'cut: unreadable: VCNET_STATE_INVALID: state file /s/cut/state.json is not valid JSON',
    ]);
  });

  it('marks an endpoint whose failed add-iface the VM did not unplug, and notes the del-iface that finishes it', () => {
    const unplugged: SandboxListing = {
      ...attached,
      endpoints: [
        attached.endpoints[0]!,
        { guestName: 'net9', podLink: 'eth9', type: 'virtual', model: 'tcfilter', unplugUnfinished: true },
      ],
      unplugUnfinished: ['net9'],
      detail: 'the add-iface of net9 failed and the undo of it did not finish',
      hint: '`vcnet del-iface pod-a FILE` with {"name":"net9"} finishes it',
    };
    const lines = listingText([unplugged], { stateDirectories: false });
    expect(lines[1]).toContain('eth0<-eth0 virtual tcfilter, net9<-eth9 virtual tcfilter unplug-unfinished');
    expect(lines.slice(2)).toEqual([
      '',
      'pod-a: attached: the add-iface of net9 failed and the undo of it did not finish; `vcnet del-iface pod-a FILE` with {"name":"net9"} finishes it',
    ]);
  });

  it('leaves the state directory out when one was listed', () => {
    const [header, row] = listingText([attached], { stateDirectories: false });
    expect(header).toBe(
      'SANDBOX  STATE     ENDPOINTS                                                HYPERVISOR  NAMESPACE',
    );
    expect(row).toBe(
      'pod-a    attached  eth0<-eth0 virtual tcfilter, net1<-net1 macvlan macvtap  qemu        /var/run/netns/pod-a',
    );
  });
});
