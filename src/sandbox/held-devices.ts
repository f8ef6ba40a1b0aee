/**
 * Which of a sandbox's devices a process still has open, found cheaply before detach (Kata detaches
 * only after the VM stopped; vcnet detach is not refused, since gc and CNI DEL must finish, but says
 * so). A tap with a queue attached has carrier (the kernel turns it on at the first attach and off
 * at the last detach), which one netlink read shows. The pid comes from one pass over /proc/PID/fd:
 * a macvtap's /dev/tapN and a tap's /dev/net/tun by the device number of the file the fd holds (not
 * by the path its link shows: a reader in another mount namespace, as under `ip netns exec`, or in a
 * chroot sees the holder's files under paths of the holder's mount tree, such as /srv/root/dev/tap5),
 * a tun fd then by the name in its fdinfo (`iff:`), counted only for a process in the sandbox's
 * namespace (tap names repeat from pod to pod).
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { fileIdentity, isSameFile, processIds } from '../netns/processes.js';
import type { Network } from '../network/network.js';

/** IFF_LOWER_UP: the link has carrier. */
const LOWER_UP = 0x10000;

/** /dev/net/tun is the misc device 10:200 (Documentation/admin-guide/devices.txt), as the kernel's makedev encodes it. */
const TUN_DEVICE_NUMBER = (10 << 8) | 200;

/** Link targets of fds that are never a device node: sockets, pipes, anonymous inodes, namespaces. */
const NOT_A_FILE = /^(socket|pipe|anon_inode|net|mnt|pid|user|uts|ipc|cgroup|time):/;

/** The device number of a character device at `path`, or undefined (gone, not a character device). */
function characterDeviceNumber(path: string): number | undefined {
  try {
    const stat = statSync(path);
    return stat.isCharacterDevice() ? stat.rdev : undefined;
  } catch {
    return undefined;
  }
}

export interface HeldDevice {
  device: string;
  /** The pids that have it open, when found. */
  pids: number[];
}

export async function heldDevices(network: Network, namespacePath: string): Promise<HeldDevice[]> {
  const taps: string[] = [];
  const macvtaps = new Map<string, string>();
  for (const endpoint of network.endpoints()) {
    const plumbing = endpoint.plumbing;
    if (!plumbing?.tapName) continue;
    if (plumbing.model === 'macvtap' || plumbing.tapDevicePath) {
      macvtaps.set(plumbing.tapDevicePath ?? `/dev/tap${plumbing.tapIndex}`, plumbing.tapName);
      continue;
    }
    if (plumbing.model !== 'tcfilter' && plumbing.model !== 'none') continue;
    try {
      const link = await network.link(plumbing.tapIndex);
      if (link.name === plumbing.tapName && link.flags & LOWER_UP) taps.push(plumbing.tapName);
    } catch {
      // gone already: nothing holds it
    }
  }
  if (taps.length === 0 && macvtaps.size === 0) return [];
  // The macvtaps by the device number of their node, as this process sees it now.
  const macvtapsByNumber = new Map<number, string>();
  for (const [path, name] of macvtaps) {
    const number = characterDeviceNumber(path);
    if (number !== undefined) macvtapsByNumber.set(number, name);
  }
  const tunNumber = characterDeviceNumber('/dev/net/tun') ?? TUN_DEVICE_NUMBER;
  const pids = new Map<string, number[]>();
  const namespace = fileIdentity(namespacePath);
  // This process too: detach closed the queue fds of the sandbox's own endpoints before asking, so
  // one still open here was opened otherwise (a launcher's own open of /dev/tapN).
  for (const pid of processIds()) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    let inNamespace: boolean | undefined;
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      // Only a file can be a device node: the link's text is enough to pass over the rest.
      if (NOT_A_FILE.test(target)) continue;
      const number = characterDeviceNumber(`/proc/${pid}/fd/${fd}`);
      if (number === undefined) continue;
      let device = macvtapsByNumber.get(number);
      if (device === undefined && number === tunNumber && taps.length > 0) {
        inNamespace ??= namespace !== undefined && isSameFile(`/proc/${pid}/ns/net`, namespace);
        if (!inNamespace) continue;
        const name = tunNameOf(`/proc/${pid}/fdinfo/${fd}`);
        if (name !== undefined && taps.includes(name)) device = name;
      }
      if (device === undefined) continue;
      const holders = pids.get(device) ?? [];
      if (!holders.includes(pid)) holders.push(pid);
      pids.set(device, holders);
    }
  }
  const held = [...taps, ...[...macvtaps.values()].filter((name) => pids.has(name))];
  return held.map((device) => ({ device, pids: pids.get(device) ?? [] }));
}

/** The tap a /dev/net/tun fd is attached to: the kernel's fdinfo says `iff:\t<name>`. */
function tunNameOf(fdinfoPath: string): string | undefined {
  try {
    return /^iff:\s*(\S+)$/m.exec(readFileSync(fdinfoPath, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
