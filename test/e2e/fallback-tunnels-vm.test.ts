/**
 * vcnet's scan over the kernel's fallback tunnels as a real kernel makes them: in the test guest (Debian's
 * cloud kernel under QEMU), after ipip, sit, ip_gre, ip6_tunnel, ip6_gre and the vtis are loaded, a fresh
 * namespace has tunl0, sit0, gre0, gretap0, erspan0... The guest program scripts/guest-programs/namespace-links.ts
 * adds a veth with an address there, runs the scan attach uses, then attaches the namespace (tcfilter) and
 * detaches it; the tunnels must be skipped as the kernel's, with that reason in the line said, and left as
 * they are, and the veth taken. The host's own kernel may have none of
 * these modules (the integration test of attach then skips): the guest has them, unless its kernel package lacks
 * one (scripts/guest-image then says which, and this test skips with that reason). Nothing runs in the host's
 * namespaces: the guest has no NIC.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import { KERNEL_FALLBACK_TUNNEL_REASON } from '../../src/network/scan.js';
import { bootGuest, guestModulesMissingReason, guestUnavailableReason, killAllGuests } from '../helpers/guest.js';
import { type NamespaceLinks, readNamespaceLinks } from '../helpers/namespace-links.js';

// The guest loads both module lists: a kernel package without one of their modules cannot make the tunnels or the pod.
const unavailable = guestUnavailableReason() ?? (await guestModulesMissingReason(['tunnels', 'pod']));
if (unavailable) console.log(`fallback-tunnels-vm: skipped: ${unavailable}`);

/** The fallback devices those modules make in a new namespace, with the kinds the kernel gives them. */
const FALLBACK_TUNNELS = [
  ['tunl0', 'ipip'],
  ['sit0', 'sit'],
  ['gre0', 'gre'],
  ['gretap0', 'gretap'],
  ['erspan0', 'erspan'],
  ['ip6tnl0', 'ip6tnl'],
  ['ip6gre0', 'ip6gre'],
  ['ip_vti0', 'vti'],
  ['ip6_vti0', 'vti6'],
];

let guestRun: Promise<NamespaceLinks> | undefined;
/** One boot for both tests: the scan's lines come before the attach's. */
function run(): Promise<NamespaceLinks> {
  guestRun ??= (async () => {
    const guest = await bootGuest({
      append: guestKernelCommandLine({
        command: 'load-modules tunnels && load-modules pod && node /agent/namespace-links.js --veth --attach',
        powerOff: true,
      }),
    });
    const result = await readNamespaceLinks(guest, 240_000);
    expect((await guest.waitForLine(/VCNET-CMD-EXIT (\d+)$/, 60_000)).match[1]).toBe('0');
    console.log(`fallback-tunnels-vm: Linux ${result.kernel}, ${result.scan.length} links scanned`);
    return result;
  })();
  return guestRun;
}

afterAll(async () => {
  await killAllGuests();
});

describe.skipIf(unavailable !== undefined)('the kernel fallback tunnels in a guest namespace', () => {
  it('are skipped with their reason by the scan, and the veth with an address beside them is taken', {
    timeout: 300_000,
  }, async () => {
    const { scan, modules } = await run();
    expect(modules).toEqual(expect.arrayContaining(['ipip', 'sit', 'ip_gre', 'ip6_tunnel', 'ip6_gre']));

    const byName = new Map(scan.map((line) => [line.name, line]));
    expect([...byName.keys()].sort()).toEqual([...FALLBACK_TUNNELS.map(([name]) => name), 'eth0', 'eth0-peer'].sort());
    for (const [name, kind] of FALLBACK_TUNNELS) {
      expect(byName.get(name!), name).toEqual({
        name,
        kind,
        skipped: KERNEL_FALLBACK_TUNNEL_REASON,
        endpointType: null,
        unsupported: 'VCNET_UNSUPPORTED_INTERFACE',
        notice: `skipped ${name} (kind ${kind}): ${KERNEL_FALLBACK_TUNNEL_REASON}; naming it would not attach it either: unsupported network interface ${name}: kind ${kind}`,
      });
    }
    // The veth with an address becomes an endpoint; its peer, without one, is skipped as any such link.
    expect(byName.get('eth0')).toEqual({
      name: 'eth0',
      kind: 'veth',
      skipped: null,
      endpointType: 'virtual',
      unsupported: null,
      notice: null,
    });
    expect(byName.get('eth0-peer')).toMatchObject({ kind: 'veth', skipped: 'no address', endpointType: 'virtual' });
    expect(byName.get('eth0-peer')?.notice).toBe(
      'skipped eth0-peer (kind veth): no address; name it with --interface eth0-peer (or add-iface) to attach it anyway',
    );
  });

  it('are left as they are by a tcfilter attach and its detach, which take the veth alone', {
    timeout: 300_000,
  }, async () => {
    const { attach } = await run();
    expect(attach).toBeDefined();
    expect(attach!.endpoints).toEqual(['eth0']);
    for (const [name] of FALLBACK_TUNNELS) {
      expect(attach!.before[name!], name).toBeTypeOf('number');
      expect(attach!.attached[name!], name).toBe(attach!.before[name!]);
    }
    // Detach gives back the namespace's links as they were (the VM's tap is gone again).
    expect(attach!.detached).toEqual(attach!.before);
    expect(Object.keys(attach!.attached).length).toBeGreaterThan(Object.keys(attach!.before).length);
  });
});
