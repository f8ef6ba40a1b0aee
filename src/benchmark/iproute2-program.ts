/**
 * Where iproute2's programs (ip, tc) are: PATH first, then the directories Debian and others install
 * them in, because a runtime may start vcnet with an empty or short PATH (`env -i`, a systemd unit).
 * An absent program is a classified error (exit 5, "missing") that names it and its package.
 */
import { VcnetError } from '../errors.js';
import { findProgram } from '../program-search.js';

const FALLBACK_DIRECTORIES = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** A program vcnet runs is not installed (or not where it looks). */
export class ProgramMissingError extends VcnetError {
  static override readonly errorName: string = 'ProgramMissingError';
  constructor(program: string, searched: readonly string[]) {
    super('VCNET_PROGRAM_MISSING', `${program} (iproute2) was not found in ${searched.join(':')}`, {
      value: program,
      hint: 'install iproute2 (apt-get install iproute2), or put the directory holding ip and tc on PATH',
    });
  }
}

/** PATH's directories, then the usual homes of ip and tc. */
export function searchDirectories(path = process.env.PATH ?? ''): string[] {
  return [...new Set([...path.split(':').filter((entry) => entry !== ''), ...FALLBACK_DIRECTORIES])];
}

/** The absolute path of `program` (ip or tc); ProgramMissingError when none of `directories` has it. */
export function iproute2Program(program: 'ip' | 'tc', directories = searchDirectories()): string {
  const found = findProgram(program, directories);
  if (!found) throw new ProgramMissingError(program, directories);
  return found;
}
