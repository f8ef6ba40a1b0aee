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

/**
 * Where a program started by name is looked for when PATH is not set at all (`env -i`, some
 * systemd units): Node's child_process (libuv) and execvp then search their built-in default,
 * /usr/bin and /bin, so a check that a program is there looks where the start will.
 */
export const UNSET_PATH_DIRECTORIES: readonly string[] = ['/usr/bin', '/bin'];

/** The directories a program started by name is looked for in: PATH's, or the default when PATH is unset. */
export function programSearchPath(path: string | undefined = process.env.PATH): readonly string[] {
  return path === undefined ? UNSET_PATH_DIRECTORIES : path.split(':');
}
