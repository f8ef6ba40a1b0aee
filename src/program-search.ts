/**
 * Where a program vcnet runs is: the first of some directories that holds an executable file of
 * that name. The guest agent looks for iptables-save and its kin on its PATH; the benchmark for ip
 * and tc on PATH and then their usual homes. Each says itself what a missing program means.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';

/** The first executable file `name` in `directories` (empty entries passed over), or undefined. */
export function findProgram(name: string, directories: readonly string[]): string | undefined {
  for (const directory of directories) {
    if (!directory) continue;
    const candidate = join(directory, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here: the next directory
    }
  }
  return undefined;
}
