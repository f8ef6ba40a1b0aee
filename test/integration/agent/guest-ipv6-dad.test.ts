/**
 * vcnet's guest agent with IPv6 duplicate address detection on, as a booted guest has it: the addresses
 * UpdateInterface adds must be usable at once (a route with `src` needs a non-tentative address), as
 * Kata's agent makes them (IFA_F_NODAD).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../../src/agent/client.js';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { guestLikeNamespace, type NamespaceAgent, startNamespaceAgent } from '../../helpers/namespace-agent.js';

interface IpAddressInfo {
  family: string;
  local: string;
  prefixlen: number;
  tentative?: boolean;
  nodad?: boolean;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  protocol?: string;
  prefsrc?: string;
  metric?: number;
}

const GUEST_MAC = '02:00:ca:fe:00:11';

let namespace: TestNamespace;
let agent: NamespaceAgent | undefined;
let client: AgentClient;

beforeEach(async () => {
  // As a guest kernel boots: DAD on (1 probe, 1 s).
  namespace = guestLikeNamespace('dad', { guestMac: GUEST_MAC, dad: true });
  agent = await startNamespaceAgent(namespace.path, { linkAppearTimeoutMs: 200 });
  client = agent.client;
});

afterEach(async () => {
  try {
    await agent?.stop();
  } finally {
    cleanupNamespaces();
  }
});

const v6Addresses = (name: string): IpAddressInfo[] =>
  namespace
    .ipJson<{ addr_info: IpAddressInfo[] }[]>('-6', 'addr', 'show', 'dev', name)[0]!
    .addr_info.filter((a) => !a.local.startsWith('fe80'));
const v6Routes = () => namespace.ipJson<IpRoute[]>('-d', '-6', 'route', 'show');

// What the ptp CNI plugin leaves in an IPv6 pod: a host route to the gateway and the subnet via it, both with src.
const ptpInterface = {
  name: 'eth0',
  hwAddr: GUEST_MAC,
  mtu: 1500n,
  IPAddresses: [{ family: IPFamily.v6, address: 'fd00:12b::2', mask: '64' }],
};
const ptpRoutes = [
  { dest: 'fd00:12b::1/128', device: 'eth0', source: 'fd00:12b::2', family: IPFamily.v6, scope: 0 },
  { dest: 'fd00:12b::/64', gateway: 'fd00:12b::1', device: 'eth0', source: 'fd00:12b::2', family: IPFamily.v6 },
];

describe('IPv6 addresses with DAD on', () => {
  it('are added without DAD, so routes with their address as src go in at once (ptp pod)', async () => {
    await client.updateInterface(ptpInterface);
    const [address] = v6Addresses('eth0');
    expect(address).toMatchObject({ local: 'fd00:12b::2', prefixlen: 64, nodad: true });
    expect(address?.tentative).toBeUndefined();
    await client.updateRoutes(ptpRoutes);
    expect(v6Routes().find((r) => r.dst === 'fd00:12b::1')).toMatchObject({ prefsrc: 'fd00:12b::2', dev: 'eth0' });
    // A second UpdateInterface (the link goes down, the addresses come back) keeps them usable.
    await client.updateInterface(ptpInterface);
    expect(v6Addresses('eth0')[0]?.tentative).toBeUndefined();
    await client.updateRoutes(ptpRoutes);
  });

  it("routes the address's own prefix as the pod does: the pushed route via the gateway, without the kernel's prefix route", async () => {
    await client.updateInterface(ptpInterface);
    // The address brings a prefix route (metric 256) that would win over the pushed one (1024).
    expect(v6Routes().find((r) => r.dst === 'fd00:12b::/64' && r.protocol === 'kernel')).toBeDefined();
    await client.updateRoutes(ptpRoutes);
    const subnet = v6Routes().filter((r) => r.dst === 'fd00:12b::/64');
    expect(subnet).toEqual([expect.objectContaining({ gateway: 'fd00:12b::1', dev: 'eth0', protocol: 'boot' })]);
    // A route list without such a route leaves the kernel's alone (a bridge pod's guest).
    await client.updateInterface(ptpInterface);
    await client.updateRoutes([{ dest: '::/0', gateway: 'fd00:12b::1', device: 'eth0', family: IPFamily.v6 }]);
    expect(v6Routes().find((r) => r.dst === 'fd00:12b::/64')).toMatchObject({ protocol: 'kernel', dev: 'eth0' });
  });
});
