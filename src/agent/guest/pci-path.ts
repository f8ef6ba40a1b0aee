/**
 * Finds the guest network interface behind a PCI path. A PCI path ("02/00") lists device numbers from
 * the root bus down, through bridges (function 0 throughout), as Kata's runtime hands it over; sysfs
 * nests a bridge's devices inside the bridge's directory, so the path is walked directory by directory.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const ROOT_BUS = 'devices/pci0000:00';

function childDevice(directory: string, slot: string): string | undefined {
  const pattern = new RegExp(`^[0-9a-f]{4}:[0-9a-f]{2}:${slot}\\.0$`);
  try {
    const match = readdirSync(directory).find((entry) => pattern.test(entry));
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
  let device: string | undefined = join(sysfsRoot, ROOT_BUS);
  for (const slot of pciPath.toLowerCase().split('/')) {
    device = childDevice(device, slot);
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
