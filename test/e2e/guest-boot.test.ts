/**
 * The test guest itself: scripts/guest-image builds it, it boots under QEMU (TCG), node runs inside it, and a
 * virtio-net NIC on a tap in a namespace this test made shows up as eth0 and passes traffic to that tap.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ensureGuestImage, type GuestImage, guestKernelCommandLine } from '../../src/hypervisor/guest-image.js';
import { bootGuest, guestUnavailableReason, killAllGuests } from '../helpers/guest.js';
import { cleanupNamespaces, makeNamespace } from '../helpers/namespace.js';

const unavailable = guestUnavailableReason();
const notRoot = process.getuid?.() !== 0 ? 'creating namespaces and taps needs root' : undefined;
if (unavailable) console.log(`guest-boot: skipped: ${unavailable}`);
else if (notRoot) console.log(`guest-boot: NIC test skipped: ${notRoot}`);

// Under TCG a boot to the ready line takes ~6 s and node start-up ~2.5 s more; these bounds only catch hangs.
const READY_TIMEOUT_MS = 90_000;
const COMMAND_TIMEOUT_MS = 90_000;
// Not anchored at the start: under TCG on a busy host a kernel message (an RCU stall report) can share a line.
const READY = /VCNET-GUEST-READY$/;
const COMMAND_EXIT = /VCNET-CMD-EXIT (\d+)$/;

let imagePromise: Promise<GuestImage> | undefined;
function image(): Promise<GuestImage> {
  imagePromise ??= (async () => {
    const started = performance.now();
    const result = await ensureGuestImage({ onProgress: (line) => console.log(line) });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `guest-boot: image ${result.built ? 'built' : 'up to date'} in ${seconds} s ` +
        `(${(result.initrdBytes / 1048576).toFixed(1)} MB initramfs, kernel ${result.kernelVersion})`,
    );
    return result;
  })();
  return imagePromise;
}

afterEach(async () => {
  await killAllGuests();
  cleanupNamespaces();
});

describe.skipIf(unavailable !== undefined)('test guest', () => {
  it('boots to the ready line, runs node and has lo', { timeout: 300_000 }, async () => {
    const guestImage = await image();
    const guest = await bootGuest({
      image: guestImage,
      append: guestKernelCommandLine({
        command: [
          `echo "NODE-RESULT $(node -e 'console.log(1+1)')"`,
          `echo "NETDEVS $(ls /sys/class/net | tr '\\n' ' ')"`,
        ].join('\n'),
        powerOff: true,
      }),
    });
    try {
      const ready = await guest.waitForLine(READY, READY_TIMEOUT_MS);
      const exit = await guest.waitForLine(COMMAND_EXIT, COMMAND_TIMEOUT_MS);
      // Informational only: a kernel message may land in the middle of this line.
      const uptime = guest.lines.map((line) => line.match(/vcnet-guest: kernel .*up ([\d.]+) s/)?.[1]).find(Boolean);
      console.log(
        `guest-boot: QEMU start to VCNET-GUEST-READY ${ready.atMs} ms (guest uptime ${uptime ?? '?'} s), ` +
          `command done at ${exit.atMs} ms`,
      );

      expect(exit.match[1]).toBe('0');
      expect((await guest.waitForLine(/NODE-RESULT (.*)$/, 1_000)).match[1]).toBe('2');
      const devices = (await guest.waitForLine(/NETDEVS (.*)$/, 1_000)).match[1]!.trim().split(/\s+/);
      expect(devices).toContain('lo');
      expect(devices).not.toContain('eth0');

      // vcnet.poweroff=1 and -no-reboot: QEMU leaves on its own, cleanly.
      const exited = await Promise.race([
        guest.exited,
        new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 30_000)),
      ]);
      expect(exited).toEqual({ code: 0, signal: null });
    } finally {
      await guest.kill();
    }
  });

  it.skipIf(notRoot !== undefined)(
    'sees a virtio-net NIC on a tap in a fresh namespace as eth0 and reaches the tap',
    { timeout: 300_000 },
    async () => {
      const guestImage = await image();
      const namespace = makeNamespace('guest');
      const guestMac = '02:00:5e:10:00:02';
      let guest: Awaited<ReturnType<typeof bootGuest>> | undefined;
      try {
        namespace.exec('ip', ['tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
        namespace.exec('ip', ['address', 'add', '192.0.2.1/24', 'dev', 'tap0']);
        namespace.exec('ip', ['link', 'set', 'tap0', 'up']);

        guest = await bootGuest({
          image: guestImage,
          netnsPath: namespace.path,
          extraArgs: [
            ...['-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no'],
            ...['-device', `virtio-net-pci,netdev=n0,mac=${guestMac},romfile=`],
          ],
          append: guestKernelCommandLine({
            command: [
              `echo "NETDEVS $(ls /sys/class/net | tr '\\n' ' ')"`,
              `echo "MAC $(cat /sys/class/net/eth0/address)"`,
              'ip link set eth0 up && ip address add 192.0.2.2/24 dev eth0',
              'ping -c 2 -w 30 192.0.2.1 >/dev/null; echo "PING-EXIT $?"',
            ].join('\n'),
            powerOff: true,
          }),
        });
        const ready = await guest.waitForLine(READY, READY_TIMEOUT_MS);
        console.log(`guest-boot: with a NIC, QEMU start to VCNET-GUEST-READY ${ready.atMs} ms`);
        const exit = await guest.waitForLine(COMMAND_EXIT, COMMAND_TIMEOUT_MS);

        const devices = (await guest.waitForLine(/NETDEVS (.*)$/, 1_000)).match[1]!.trim().split(/\s+/);
        expect(devices).toContain('eth0');
        expect((await guest.waitForLine(/MAC ([0-9a-f:]+)$/, 1_000)).match[1]).toBe(guestMac);
        expect((await guest.waitForLine(/PING-EXIT (\d+)$/, 1_000)).match[1]).toBe('0');
        expect(exit.match[1]).toBe('0');
      } finally {
        await guest?.kill();
        namespace.delete();
      }
    },
  );
});
