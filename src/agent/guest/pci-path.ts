/**
 * Finds the guest network interface behind a PCI path. A PCI path ("02/00", "02.0/01.1") lists devices
 * from the root bus down, through bridges, each by slot and function (0 when not written), as Kata's
 * agent reads it (device-path.ts); sysfs nests a bridge's devices inside the bridge's directory, so the
 * path is walked directory by directory.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type PciPathElement, parsePciPath } from '../device-path.js';

/** A PCI device's directory name, domain:bus:slot.function ("0000:01:00.1"); the group is slot.function. */
const PCI_DEVICE_NAME = /^[0-9a-f]{4}:[0-9a-f]{2}:([0-9a-f]{2}\.[0-7])$/;

function childDevice(directory: string, element: PciPathElement): string | undefined {
  const slotFunction = `${element.slot.toString(16).padStart(2, '0')}.${element.function}`;
  try {
    const match = readdirSync(directory).find((entry) => PCI_DEVICE_NAME.exec(entry)?.[1] === slotFunction);
    return match ? join(directory, match) : undefined;
  } catch {
    return undefined;
  }
}

function firstEntry(directory: string): string | undefined {
  try {
    return readdirSync(directory).sort()[0];
  } catch {
    return undefined;
  }
}

/** The interface name at `pciPath`, or undefined when sysfs has none (yet: a hot-plug may be under way). */
export function linkNameAtPciPath(pciPath: string, sysfsRoot = '/sys'): string | undefined {
  const path = parsePciPath(pciPath);
  if (!path) return undefined;
  let device: string | undefined = join(sysfsRoot, `devices/pci0000:${path.rootBus.toString(16).padStart(2, '0')}`);
  for (const element of path.elements) {
    device = childDevice(device, element);
    if (!device) return undefined;
  }
  // A plain NIC lists its interface in net/; virtio-net puts it one level down, in virtioN/net/.
  const direct = join(device, 'net');
  if (existsSync(direct)) return firstEntry(direct);
  try {
    for (const entry of readdirSync(device)) {
      if (!entry.startsWith('virtio')) continue;
      const name = firstEntry(join(device, entry, 'net'));
      if (name) return name;
    }
  } catch {
    return undefined;
  }
  return undefined;
}
