/**
 * Records the kernel's fallback tunnels as a real kernel makes them, for the scan's unit test: boots the test
 * guest (scripts/guest-image: Debian's cloud kernel under QEMU), loads ipip, sit, ip_gre, ip6_tunnel, ip6_gre
 * and the vtis there, makes a fresh namespace in the guest (the kernel makes tunl0, sit0, gre0... in each new
 * namespace, as in a pod's) and writes the replies of its link, address, route and neighbour dumps (header and
 * payload, hex) to test/fixtures/netlink/fallback-tunnels.json. Nothing runs in the host's namespaces: the
 * guest is a VM without a NIC. Needs qemu-system-x86_64 and linux-image-cloud-amd64 (as the e2e tests).
 *
 * Run: `npx tsx scripts/capture-fallback-tunnels.ts` (about a minute under TCG).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { guestKernelCommandLine } from '../src/hypervisor/guest-image.js';
import { bootGuest, guestUnavailableReason } from '../test/helpers/guest.js';
import { readNamespaceLinks } from '../test/helpers/namespace-links.js';

const unavailable = guestUnavailableReason();
if (unavailable) {
  console.error(`capture-fallback-tunnels: cannot boot the test guest: ${unavailable}`);
  process.exit(1);
}

const guest = await bootGuest({
  append: guestKernelCommandLine({
    command: 'load-modules tunnels && node /agent/namespace-links.js',
    powerOff: true,
  }),
});
try {
  const recorded = await readNamespaceLinks(guest, 300_000);
  const fixture = {
    source: `captured from the test guest's Linux ${recorded.kernel} (Debian cloud kernel under QEMU) by scripts/capture-fallback-tunnels.ts: a fresh namespace after loading the tunnel modules`,
    kernel: recorded.kernel,
    modules: recorded.modules,
    links: recorded.messages.links,
    addresses: recorded.messages.addresses,
    routes: recorded.messages.routes,
    neighbours: recorded.messages.neighbours,
  };
  const output = new URL('../test/fixtures/netlink/fallback-tunnels.json', import.meta.url);
  writeFileSync(output, `${JSON.stringify(fixture, null, 1)}\n`);
  const digest = createHash('sha256').update(JSON.stringify(fixture)).digest('hex').slice(0, 12);
  console.log(
    `wrote ${output.pathname}: ${recorded.messages.links.length} links from Linux ${recorded.kernel} (${digest})`,
  );
} finally {
  await guest.kill();
}
