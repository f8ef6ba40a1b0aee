/**
 * Macvtap device nodes that belong to one pod only. A macvtap's character device is named
 * tap<ifindex>, and /dev is host-global while ifindexes are per namespace: two pods whose macvtaps
 * get the same small index share one /dev/tapN, which is the first one's (the second's node is never
 * made, and disappears when the first goes). As Kata does, each macvtap is created at a random high
 * index (8192 + random & 0xFFFF, up to 128 tries). Unlike Kata, vcnet then checks the node: the
 * kernel lists every character device, whatever its namespace, under /sys/dev/char/<major>:<minor>,
 * so exactly one macvtap must be named tap<index> and /dev/tap<index> must carry its major:minor;
 * every queue opened is checked again by fstat, so a node swapped in between is caught too.
 */

import { randomInt } from 'node:crypto';
import { fstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SystemCallError, VcnetError } from '../../errors.js';
import { nativeDevices } from '../../native/devices.js';
import type { LinkSpec } from '../../netlink/codec/link.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { LinkNameTakenError } from './plan-attach.js';

/** Kata's hostLinkOffset, linkRange and linkRetries. */
export const MACVTAP_INDEX_BASE = 8192;
const MACVTAP_INDEX_RANGE = 0xffff;
const MACVTAP_INDEX_ATTEMPTS = 128;

/** Where the device files are; tests point these at a temporary tree. */
export interface DeviceRoots {
  /** /dev */
  devices: string;
  /** /sys */
  sysfs: string;
  /** /proc */
  proc: string;
}

const HOST_DEVICE_ROOTS: DeviceRoots = { devices: '/dev', sysfs: '/sys', proc: '/proc' };

export interface MacvtapDeviceNode {
  path: string;
  major: number;
  minor: number;
}

/**
 * A macvtap's NIC cannot be described (`VCNET_MACVTAP_DEVICE`): its `/dev/tapN` queues are not held by this
 * process. Call `endpoint.openQueueFds()` first, or use `hypervisorDeviceConfig`'s `fds`.
 */
export class MacvtapDeviceError extends VcnetError {
  static override readonly errorName: string = 'MacvtapDeviceError';
  constructor(message: string, value: unknown, hint: string) {
    super('VCNET_MACVTAP_DEVICE', message, { value, hint });
  }
}

export function randomMacvtapIndex(random: (max: number) => number = randomInt): number {
  return MACVTAP_INDEX_BASE + (random(MACVTAP_INDEX_RANGE + 1) & MACVTAP_INDEX_RANGE);
}

function macvtapDevicePath(index: number, roots: DeviceRoots = HOST_DEVICE_ROOTS): string {
  return join(roots.devices, `tap${index}`);
}

/** The macvtap character devices' major number, from /proc/devices ("246 macvtap"). */
export function macvtapMajor(roots: DeviceRoots = HOST_DEVICE_ROOTS): number {
  const text = readFileSync(join(roots.proc, 'devices'), 'utf8');
  const characterSection = text.split(/\n\s*\n/)[0] ?? '';
  const line = characterSection.split('\n').find((entry) => /^\s*\d+\s+macvtap\s*$/.test(entry));
  if (!line) {
    throw new MacvtapDeviceError(
      `${join(roots.proc, 'devices')} lists no macvtap character devices`,
      'macvtap',
      'load the macvtap module (modprobe macvtap)',
    );
  }
  return Number.parseInt(line.trim(), 10);
}

/** Every macvtap character device named tap<index>, in any namespace (/sys/dev/char is not per namespace). */
export function macvtapDevicesAtIndex(index: number, major: number, roots: DeviceRoots = HOST_DEVICE_ROOTS) {
  const directory = join(roots.sysfs, 'dev', 'char');
  const found: Array<{ major: number; minor: number; device: string }> = [];
  for (const entry of readdirSync(directory)) {
    const [entryMajor, entryMinor] = entry.split(':').map(Number);
    if (entryMajor !== major || entryMinor === undefined) continue;
    let target: string;
    try {
      target = readlinkSync(join(directory, entry));
    } catch {
      continue; // removed meanwhile
    }
    if (basename(target) === `tap${index}`) found.push({ major, minor: entryMinor, device: target });
  }
  return found;
}

/** major:minor of a dev_t as glibc encodes it (gnu_dev_major/gnu_dev_minor). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const low = rdev >>> 0;
  const high = Math.floor(rdev / 0x1_0000_0000);
  return { major: ((low >>> 8) & 0xfff) | (high & ~0xfff), minor: (low & 0xff) | ((low >>> 12) & 0xfff00) };
}

/** Why the node for a macvtap at `index` cannot be trusted, or undefined when it is this macvtap's alone. */
export function macvtapNodeProblem(
  index: number,
  roots: DeviceRoots = HOST_DEVICE_ROOTS,
  /** macvtap's character major when the caller has read it already (reading /proc/devices costs ~200 µs). */
  major = macvtapMajor(roots),
): { problem: string; node?: undefined } | { problem?: undefined; node: MacvtapDeviceNode } {
  const devices = macvtapDevicesAtIndex(index, major, roots);
  const path = macvtapDevicePath(index, roots);
  if (devices.length === 0) return { problem: `no macvtap character device is named tap${index}` };
  if (devices.length > 1) {
    return {
      problem: `${devices.length} macvtaps in different namespaces are named tap${index} (${devices.map((d) => `${d.major}:${d.minor}`).join(', ')}), and ${path} can be only one of them`,
    };
  }
  const own = devices[0] as { major: number; minor: number };
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(path);
  } catch {
    return { problem: `${path} does not exist (another macvtap at index ${index} may have had it and gone)` };
  }
  if (!stat.isCharacterDevice()) return { problem: `${path} is not a character device` };
  const node = deviceNumbers(stat.rdev);
  if (node.major !== own.major || node.minor !== own.minor) {
    return {
      problem: `${path} is ${node.major}:${node.minor}, but this macvtap's device is ${own.major}:${own.minor}`,
    };
  }
  return { node: { path, major: own.major, minor: own.minor } };
}

/** The device node of the macvtap at `index`, checked to be its own; throws when it is not. */
export function verifiedMacvtapNode(index: number, roots: DeviceRoots = HOST_DEVICE_ROOTS): MacvtapDeviceNode {
  const checked = macvtapNodeProblem(index, roots);
  if (checked.problem !== undefined) {
    throw new MacvtapDeviceError(
      `the device node of the macvtap at index ${index} is not its own: ${checked.problem}`,
      index,
      `another namespace has a macvtap at index ${index}: recreate this one at a unique index (ip link add ... index <8192-73727> type macvtap), or let vcnet make it (model macvtap)`,
    );
  }
  return checked.node;
}

/** Opens a checked macvtap node once per queue, and checks each fd's device again (the node may change between). */
export function openVerifiedMacvtapQueues(node: MacvtapDeviceNode, queues: number): number[] {
  let fds: number[];
  try {
    fds = nativeDevices.openDevice(node.path, queues);
  } catch (error) {
    throw new SystemCallError(`open ${node.path}`, error as NodeJS.ErrnoException);
  }
  for (const fd of fds) {
    const opened = deviceNumbers(fstatSync(fd).rdev);
    if (opened.major !== node.major || opened.minor !== node.minor) {
      for (const other of fds) nativeDevices.closeFd(other);
      throw new MacvtapDeviceError(
        `${node.path} changed while it was opened: it is ${opened.major}:${opened.minor} now, not ${node.major}:${node.minor}`,
        node.path,
        'another macvtap took the same index meanwhile: attach again',
      );
    }
  }
  return fds;
}

function errnoOf(error: unknown): string | undefined {
  return (error as { errno?: unknown }).errno as string | undefined;
}

/**
 * Creates a macvtap at a random high index whose /dev/tap<index> is its own: an index whose node
 * exists is passed over, an index the kernel refuses (EEXIST, or EBUSY on older kernels) is tried
 * again, and a macvtap whose node turns out to be shared is deleted and made again elsewhere.
 */
export async function createMacvtapAtUniqueIndex(
  handle: NetlinkHandle,
  spec: LinkSpec,
  options: {
    roots?: DeviceRoots;
    random?: (max: number) => number;
    attempts?: number;
    /** Told each index before the macvtap is asked for there (the executor journals it: the record names the link by identity). */
    beforeCreate?: (index: number) => void;
    /** The index tried first (the executor's, journaled with the plan's intent); random ones after it. */
    first?: number;
  } = {},
): Promise<{ index: number; node: MacvtapDeviceNode }> {
  const roots = options.roots ?? HOST_DEVICE_ROOTS;
  const attempts = options.attempts ?? MACVTAP_INDEX_ATTEMPTS;
  let lastProblem = 'no index tried';
  // Read once: it stays the same while the macvtap module is loaded.
  const major = macvtapMajor(roots);
  for (let attempt = 0; attempt < attempts; attempt++) {
    const index = attempt === 0 && options.first !== undefined ? options.first : randomMacvtapIndex(options.random);
    if (macvtapDevicesAtIndex(index, major, roots).length > 0) {
      lastProblem = `tap${index} is taken by another macvtap`;
      continue;
    }
    options.beforeCreate?.(index);
    try {
      await handle.addLink({ ...spec, index });
    } catch (error) {
      const errno = errnoOf(error);
      if (errno !== 'EEXIST' && errno !== 'EBUSY') throw error;
      // EEXIST is also the answer to a name in use: no index helps then.
      const holder = await handle.findLink({ name: spec.name });
      // Another attach made it meanwhile (the plan saw the name free): say whose, never "remove it".
      if (holder) throw new LinkNameTakenError(spec.name, holder, error);
      lastProblem = `index ${index}: ${errno}`;
      continue;
    }
    const checked = macvtapNodeProblem(index, roots, major);
    if (checked.node) return { index, node: checked.node };
    lastProblem = checked.problem;
    await handle.deleteLink(index);
  }
  throw new MacvtapDeviceError(
    `no index for macvtap ${spec.name} gave it a device node of its own after ${attempts} tries (last: ${lastProblem})`,
    spec.name,
    'too many macvtaps on this host, or another program creates them at the same indexes',
  );
}
