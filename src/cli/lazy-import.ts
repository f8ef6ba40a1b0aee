/**
 * The code a command loads when it runs (`await import()`: the agent's protobuf code, the demo,
 * OpenTelemetry's exporter), loaded so that a load the system refuses is a vcnet error: a process at
 * its open-file limit (EMFILE) got Node's bare "EMFILE: too many open files, open '.../chunks/...'"
 * with no code or hint. Now it is VCNET_SYSCALL, naming the errno, with the hint to raise the limit.
 */
import { SystemCallError } from '../errors.js';

/** `load()` (an `import()` of a literal path, which the bundler keeps as a chunk of its own), for `what`. */
export async function importForCommand<Module>(what: string, load: () => Promise<Module>): Promise<Module> {
  try {
    return await load();
  } catch (error) {
    // Only a file the system would not open or read: an error the module throws as it runs is its own.
    const failure = error as NodeJS.ErrnoException;
    if (typeof failure?.code !== 'string' || typeof failure.syscall !== 'string') throw error;
    throw new SystemCallError(`load the code of ${what}`, failure);
  }
}
