/** `vcnet list`: the records vcnet keeps, one row each with its state (listSandboxes), read-only. */
import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { listSandboxes, type SandboxListing } from '../../sandbox/list.js';
import { ExitCode } from '../exit-codes.js';
import { describeCommand } from '../help-details.js';
import { printJson, printText, table, writeStderr } from '../output.js';

export function registerList(program: Command): void {
  describeCommand(program.command('list'), {
    summary: 'list the sandboxes and vcnet-cni interfaces vcnet has recorded, with their state (changes nothing)',
    description:
      'list the sandboxes and vcnet-cni interfaces vcnet has recorded, one row each with its state; takes no lock and changes nothing',
    details: [
      'States: `attached` (its namespace is there, at its recorded path or, said in a note, held elsewhere); `unfinished` (an attach or undo a killed process left part-way or the kernel refused in part, or one a process is changing right now); `earlier-boot` (written before this boot: it names nothing that exists); `namespace-gone` (nothing holds its namespace any more, or a later namespace has its inode); `unreadable` (damaged, cut short, another format version, or not a regular file).',
      'After the table, a note for each record that is not plainly attached says why and what to run: the `vcnet gc` that finishes or drops it, the `vcnet detach` that undoes it, or for an unreadable record what gc does with it and how to settle it. An endpoint whose add-iface (or watch) hot-plugged it and waits for the guest to configure it, without the sandbox lock, reads `guest-pending(waiting)`; `guest-pending(stopped)` once that process was stopped before it finished, with a note naming `vcnet configure-guest` and `vcnet del-iface`; `guest-pending(finishing)` when its wait for the guest is over and that process holds the lock of the sandbox, recording the outcome or undoing the endpoint (told from /proc/locks: list takes no lock); `, guessed` inside the parentheses when that is told by time, not by the process (one in a PID namespace this one sees nothing of, or whose pids there its /proc does not show (no NSpid lines: Linux before 4.1), or whose start time it cannot compare (the offset of its own time namespace unreadable: /proc/self/timens_offsets masked), or one it may not look at: run without root, a note says so). An endpoint whose add-iface failed and whose undo the VM did not complete (it kept the NIC) reads `unplug-unfinished`, with a note naming the `vcnet del-iface` that finishes it. The exit status is 1 when a record cannot be read (everything else is still listed, the reason on stderr, as ls does), else 0.',
    ],
  })
    .option(
      '--state-dir <dir>',
      'only this state directory (default: every one gc reads: /run/vcnet/sandboxes, /run/vcnet/cni, $VCNET_STATE_DIR and every directory vcnet recorded in); one that does not exist lists nothing, one another user could change is refused (exit 2)',
    )
    .option('--json', 'machine-readable output')
    .action(async (options: { stateDir?: string; json?: boolean }) => {
      // As every other command words it: the library would name its own field, stateDirectory.
      if (options.stateDir?.trim() === '')
        throw new InvalidInputError('--state-dir', options.stateDir, 'a directory path, such as /run/vcnet/sandboxes');
      const listings = await listSandboxes(options.stateDir === undefined ? {} : { stateDirectory: options.stateDir });
      if (options.json) printJson(listings);
      else printText(listingText(listings, { stateDirectories: options.stateDir === undefined }).join('\n'));
      // As `ls` does for an entry it cannot read: everything else is listed, the reason is on stderr.
      const unreadable = listings.filter((listing) => listing.state === 'unreadable');
      for (const listing of unreadable) {
        writeStderr(`vcnet: ${listing.error?.message ?? listing.detail}\n`);
        const hint = listing.hint ?? listing.error?.hint;
        if (hint) writeStderr(`hint: ${hint}\n`);
      }
      if (unreadable.length > 0) process.exitCode = ExitCode.FAILED;
    });
}

/**
 * How an endpoint reads in the table: `guest<-pod-link type model`, with `guest-pending(waiting|stopped)`
 * while add-iface waits (or waited) for the guest (`, guessed` added when that is told by time: its
 * add-iface in a PID namespace out of sight, or a process this one may not look at), and `unplug-unfinished` while a failed add-iface's NIC
 * waits for del-iface.
 */
function endpointText(endpoint: SandboxListing['endpoints'][number]): string {
  const guessed = endpoint.guestPendingGuessed ? ', guessed' : '';
  const pending = endpoint.guestPending ? ` guest-pending(${endpoint.guestPending}${guessed})` : '';
  const unplug = endpoint.unplugUnfinished ? ' unplug-unfinished' : '';
  return `${endpoint.guestName}<-${endpoint.podLink} ${endpoint.type} ${endpoint.model}${pending}${unplug}`;
}

/**
 * The text of `vcnet list`: a table with a header (only the header when nothing is recorded, as
 * `podman ps` prints it), then, after a blank line, a note for each record that is not `attached`
 * (or is, through another path than its recorded one) saying why and what to run. `stateDirectories`: a column naming each record's state directory
 * (when more than one was read).
 */
export function listingText(listings: readonly SandboxListing[], options: { stateDirectories: boolean }): string[] {
  const headers = ['SANDBOX', 'STATE', 'ENDPOINTS', 'HYPERVISOR', 'NAMESPACE'];
  if (options.stateDirectories) headers.push('STATE DIRECTORY');
  const rows = listings.map((listing) => {
    const row: Array<string | { escaped: string }> = [
      listing.id,
      listing.state,
      listing.endpoints.length > 0 ? listing.endpoints.map(endpointText).join(', ') : '-',
      listing.hypervisor ?? '-',
      // A damaged path is written with its bad bytes as \xNN already: escaped again, each would read \\xNN.
      listing.namespacePathNotUtf8 && listing.namespacePath !== undefined
        ? { escaped: listing.namespacePath }
        : (listing.namespacePath ?? '-'),
    ];
    if (options.stateDirectories) row.push(listing.stateDirectory);
    return row;
  });
  const notes = listings
    .filter((listing) => listing.state !== 'attached' || listing.detail !== undefined)
    .map((listing) => {
      const why = listing.error ? `${listing.error.code}: ${listing.error.message}` : listing.detail;
      const action = listing.hint ? `; ${listing.hint}` : '';
      return `${listing.id}: ${listing.state}: ${why}${action}`;
    });
  return [...table(headers, rows).split('\n'), ...(notes.length > 0 ? ['', ...notes] : [])];
}
