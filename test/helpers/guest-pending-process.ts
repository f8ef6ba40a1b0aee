/**
 * A node process that makes a guestPending entry of its own and reads others, run under a command
 * that puts it in other namespaces (`unshare --pid …`, `unshare --time …`): what an add-iface
 * writes there and what a reader there concludes. It loads vcnet's own module from dist/, as the
 * CLI runs it.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { GuestPending } from '../../src/network/state/records.js';
import { spawnKilledAfterTest } from './child-output.js';
import type { TestCleanup } from './cleanup.js';
import { until } from './until.js';

/** vcnet's guest-pending module in dist/, as the CLI loads it: what a node process in other namespaces imports. */
export const GUEST_PENDING_MODULE = pathToFileURL(
  fileURLToPath(new URL('../../dist/sandbox/guest-pending.js', import.meta.url)),
).href;

/**
 * Prints a new entry of this process (as add-iface writes it), then for each entry read from stdin
 * its verdict and whether that entry is its own; `exit` ends it.
 */
const ENTRY_SCRIPT = `
  const { guestPendingEntry, guestPendingVerdict, isOwnEntry } = await import(${JSON.stringify(GUEST_PENDING_MODULE)});
  const entry = guestPendingEntry({ name: 'eth1', properties: { link: { name: 'eth9' } } }, 'add-iface');
  console.log('entry ' + JSON.stringify(entry));
  let input = '';
  process.stdin.on('data', (chunk) => {
    input += chunk;
    for (let end = input.indexOf('\\n'); end >= 0; end = input.indexOf('\\n')) {
      const line = input.slice(0, end);
      input = input.slice(end + 1);
      if (line === 'exit') process.exit(0);
      const read = JSON.parse(line);
      console.log('verdict ' + JSON.stringify({ ...guestPendingVerdict(read), own: isOwnEntry(read) }));
    }
  });
`;

/** What the process concluded of an entry: guestPendingVerdict's answer, and whether it is its own. */
export interface EntryVerdict {
  running: boolean;
  guessed: boolean;
  own: boolean;
}

/**
 * Starts the entry process under `wrapper` (the command and arguments before node's; none: run as
 * is), killed after the test by `cleanup`.
 */
export function guestPendingProcess(cleanup: TestCleanup, wrapper: string[] = []) {
  const [command, ...args] = [...wrapper, process.execPath, '--input-type=module', '-e', ENTRY_SCRIPT];
  const { child, output, exited } = spawnKilledAfterTest(cleanup, command!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = (prefix: string) =>
    output()
      .split('\n')
      .filter((line) => line.startsWith(`${prefix} `))
      .map((line) => JSON.parse(line.slice(prefix.length + 1)) as unknown);
  return {
    entry: async () => {
      await until(() => lines('entry').length > 0, `the entry (output: ${output()})`);
      return lines('entry')[0] as GuestPending;
    },
    /** Its verdict on `entry`, read in its namespaces through its /proc. */
    verdictOf: async (entry: GuestPending) => {
      const before = lines('verdict').length;
      child.stdin?.write(`${JSON.stringify(entry)}\n`);
      await until(() => lines('verdict').length > before, `the verdict (output: ${output()})`);
      return lines('verdict').at(-1) as EntryVerdict;
    },
    exit: async () => {
      child.stdin?.write('exit\n');
      await exited;
    },
  };
}
