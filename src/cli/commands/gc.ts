/** `vcnet gc`: removes what vcnet made for sandboxes that are gone (collectGarbage), and prints the report. */
import type { Command } from 'commander';
import { ErrnoOutcomes } from '../../error-codes.js';
import { hintForErrno, InvalidInputError, NamespacePathError } from '../../errors.js';
import { collectGarbage } from '../../network/garbage-collector.js';
import type { GarbageFailure, GarbageItem, GarbageReport } from '../../network/gc/report.js';
import { shellWord } from '../../shell-word.js';
import { ExitCode } from '../exit-codes.js';
import { describeCommand } from '../help-details.js';
import { print, printJson, printText, table, writeStderr } from '../output.js';

function isPermissionErrno(errno: string | undefined): boolean {
  return errno !== undefined && Object.hasOwn(ErrnoOutcomes, errno);
}

function exitCodeForFailures(failures: readonly GarbageFailure[]): number {
  return failures.some((failure) => isPermissionErrno(failure.errno)) ? ExitCode.NOT_PERMITTED : ExitCode.FAILED;
}

export function registerGc(program: Command): void {
  describeCommand(program.command('gc'), {
    summary: 'remove what vcnet left for sandboxes that are gone; finish attaches a killed command left',
    description:
      'remove what vcnet made for sandboxes that are gone (plumbing, records, lock files) and finish the attaches a killed command left unfinished; a live sandbox, or one another command is changing, is left alone',
    details: [
      "Remove taps, macvtaps, ifbs, filters and rate limits' htb qdiscs vcnet made whose sandbox is gone, records of namespaces that exist nowhere, records written in an earlier boot, and record directories and lock files an interrupted command left without a record (with --netns: only in the --state-dir given).",
      "A record gc cannot use (damaged, cut short, another format version) is listed in `skipped` with why, and never acted on: gc drops it once the namespace it still names (device, inode and path) is gone, or when its boot id and creation time both still tell an earlier boot; until then it leaves that namespace's vcnet links alone, and every namespace's when the record names none. Its reason (and `vcnet list`'s hint for it) says which, and how to settle a record gc keeps: restore the file while its sandbox runs, else set it aside (`mv state.json state.json.unreadable`) and let gc --netns collect what it left.",
      "Finish the unfinished attaches of records whose lock is free (an add-iface or watch killed part-way; one whose namespace or sandbox another attach, detach, add-iface or vcnet-cni ADD/DEL is changing right now is kept, listed in `skipped` with `beingChanged` and its links in `beingChanged`, and so is a record of a namespace gone whose sandbox another process is changing: run gc again once that is done), unplugging first a NIC such an attach hot-plugged into the sandbox's running VM (one the VM keeps stays recorded, listed in `failures`; QEMU's QMP, which serves one client at a time, is waited for without the locks, 3 s or VCNET_QMP_CONNECT_TIMEOUT seconds when set, and a record whose QMP another client still holds then is kept as it is, listed in `skipped` with `beingChanged`; Cloud Hypervisor, which answers one API request at a time, is asked `vmm.ping` (which changes nothing) as long, without the locks, before its `vm.remove-device`, and a record whose VMM answers none then (slow or hung on another request) is kept the same way).",
      'A namespace another command is changing right now is not looked into (listed in `withheld` with `beingChanged`: run gc again).',
    ],
  })
    .option('--dry-run', 'only list what would be removed, and why')
    .option(
      '--netns <path...>',
      "only these namespaces, and remove vcnet links there that no record claims, and vcnet redirects to a device that no longer exists (they drop the pod link's ingress) (default: every /var/run/netns entry and every process namespace; there, both are removed only in namespaces a record names, and listed as unclaimed elsewhere; an htb of a rate limit's shape that no record claims, on a link no redirect of vcnet's is on or leads to, is never removed, only listed in `leftAlone` with the tc command that removes it: the shape is Kata's and an operator's too); a path that no longer exists is collected when a record names it (gc drops that record), else it is noted on stderr (absent in --json) as nothing to collect when its directory exists, and refused (exit 2) when it is a bare name (give /var/run/netns/NAME) or its directory does not exist; a path that is a regular file, no namespace (the mount point left after the namespace was unmounted), is collected as a path gone when a record names it (noted on stderr, absent in --json), else refused (exit 2)",
    )
    .option(
      '--state-dir <dir...>',
      "more state directories to read (always read: /run/vcnet/sandboxes, /run/vcnet/cni, $VCNET_STATE_DIR and every directory vcnet recorded in); one another user owns or can write is read by root for claims only (listed in `claimsOnly`: what its records name is kept, nothing in it is acted on: no record dropped, no unfinished attach finished, no file removed; a symbolic link to one is refused, exit 2), and by any other user refused (exit 2), or skipped (listed in `skipped`) when only the registry or a default names it; a directory of records gc cannot list or a record it cannot read (EIO, EMFILE, ENOMEM: not ENOENT, nor an entry that is no directory, such as a symbolic link loop) is listed in `skipped`, and gc then removes no link, filter or qdisc in any namespace (that record may be a live sandbox's; records of namespaces that exist nowhere still go), listing the links it left in `withheld` (run as a user other than root, that is so whenever root's own state directories, closed to it, are read: run root's gc with this user's --state-dir instead, or detach this user's sandboxes)",
    )
    .option('--json', 'machine-readable output')
    .action(async (options: { dryRun?: boolean; netns?: string[]; stateDir?: string[]; json?: boolean }) => {
      for (const directory of options.stateDir ?? [])
        if (directory === '') throw new InvalidInputError('--state-dir', directory, 'a directory path');
      const report = await collectGarbage({
        ...(options.stateDir ? { stateDirectories: options.stateDir } : {}),
        ...(options.netns ? { namespaces: options.netns } : {}),
        dryRun: options.dryRun ?? false,
      }).catch((error: unknown) => {
        // The library names the paths by its option, `namespaces`; a user typed --netns.
        if (error instanceof NamespacePathError && error.field === 'namespaces')
          throw new NamespacePathError('--netns', String(error.value), error.what);
        throw error;
      });
      // A gc that could not remove everything did not succeed: 3 when the kernel refused it for lack of
      // privilege (as any other command), else 1. The report is printed either way.
      if (report.failures.length > 0) process.exitCode = exitCodeForFailures(report.failures);
      // stderr says the same with --json, as every other command's failure does: the JSON is for the
      // program, the lines and the hint for the person reading its log.
      reportToStderr(report);
      if (options.json) {
        printJson(report);
        return;
      }
      // No record claims these, but a VM may be using them: said on stdout, as part of what gc did.
      for (const link of report.inUse) printText(`kept ${link.name} in ${link.namespacePath}: ${link.detail}`);
      for (const line of summaryLines(report)) print(line);
    });
}

/**
 * What a text gc prints after the links it kept in use: what it removed (a table), or a line saying
 * why nothing went; and what it kept for any reason but a live sandbox's, with what to do about it.
 */
export function summaryLines(report: GarbageReport): string[] {
  const kept = keptReasons(report);
  if (report.removed.length === 0 && report.failures.length > 0)
    return [
      `removed nothing (${report.failures.length} removal(s) failed, see stderr)${kept.map((reason) => `; ${reason}`).join('')}`,
    ];
  const live = liveLinks(report);
  // Only links of live sandboxes are "nothing to collect": a record left for another reason (being
  // changed, unreadable, its namespace unseen) may well be garbage that gc did not finish.
  const notLive = kept.filter((reason) => reason !== livePhrase(live));
  if (report.removed.length === 0)
    return [
      notLive.length > 0
        ? `removed nothing: ${kept.join('; ')}`
        : `nothing to collect (${live} vcnet link(s) belong to live sandboxes)`,
    ];
  return [
    `${report.dryRun ? 'would remove' : 'removed'} ${report.removed.length} item(s):`,
    table(['KIND', 'NAMESPACE', 'NAME', 'WHY'], removedRows(report.removed)),
    ...notLive.map((reason) => `not removed: ${reason}`),
  ];
}

/** Links kept as live sandboxes': every kept one but those in use, withheld or being changed. */
function liveLinks(report: GarbageReport): number {
  const count = (entries: ReadonlyArray<{ links: readonly string[] }>) =>
    entries.reduce((sum, entry) => sum + entry.links.length, 0);
  return report.kept - report.inUse.length - count(report.withheld) - count(report.beingChanged);
}

function livePhrase(live: number): string {
  return `${live} vcnet link(s) belong to live sandboxes`;
}

/**
 * Why gc kept what it did not remove, one phrase per reason, each saying what to do: links it did
 * not examine as a record it could not read may be theirs (`withheld`), records another process is
 * changing right now (and their links), records kept because whether their namespace exists cannot
 * be told, records or directories it could not read (unless the first phrase says so already), and
 * links of live sandboxes.
 */
function keptReasons(report: GarbageReport): string[] {
  const reasons: string[] = [];
  // Not "nothing to collect": gc did not look, as a record it could not read may own them. Said
  // after a table of what went too: records dropped do not make the links it did not look at fewer.
  const unreadableWithheld = report.withheld.filter((entry) => !entry.beingChanged);
  const withheld = unreadableWithheld.reduce((count, entry) => count + entry.links.length, 0);
  if (withheld > 0)
    reasons.push(
      `${withheld} vcnet link(s) in ${unreadableWithheld.length} namespace(s) not examined, as a record gc could not read may be theirs (see stderr)`,
    );
  const changing = report.skipped.filter((record) => record.beingChanged).length;
  const changingLinks = report.beingChanged.reduce((sum, entry) => sum + entry.links.length, 0);
  if (changing > 0)
    reasons.push(
      `${changing} record(s)${changingLinks > 0 ? ` with ${changingLinks} vcnet link(s)` : ''} left as they are, as another process is changing them right now: run gc again once it is done`,
    );
  // A namespace gc did not look into at all, as another command held its lock (its links as first
  // listed are in `withheld` too).
  // Not when the namespace's only vcnet links are those of a record said above as being changed.
  const saidWithRecord = new Set(report.beingChanged.map((entry) => entry.namespacePath));
  const busy = report.withheld.filter(
    (entry) => entry.beingChanged && (entry.links.length > 0 || !saidWithRecord.has(entry.namespacePath)),
  ).length;
  if (busy > 0)
    reasons.push(`${busy} namespace(s) not examined, as another command was changing them: run gc again (see stderr)`);
  const unseen = report.skipped.filter((record) => record.namespaceUnseen).length;
  if (unseen > 0)
    reasons.push(`${unseen} record(s) kept, as whether their namespace still exists cannot be told (see stderr)`);
  const unreadable = report.skipped.filter((record) => !record.beingChanged && !record.namespaceUnseen).length;
  if (unreadable > 0 && withheld === 0)
    reasons.push(`${unreadable} record(s) or state directories gc cannot read skipped (see stderr)`);
  const live = liveLinks(report);
  if (live > 0) reasons.push(livePhrase(live));
  return reasons;
}

/**
 * The table's rows: one per item, except an attach killed early, whose endpoints that it never got to
 * (often all but one or two of a pod's) are said in one row per sandbox; --json lists each.
 */
function removedRows(removed: readonly GarbageItem[]): string[][] {
  const row = (item: GarbageItem) => [item.kind, item.namespacePath || '-', item.name, item.detail ?? ''];
  const untouched = new Map<string, GarbageItem[]>();
  for (const item of removed) {
    if (!item.nothingMade || item.interface === undefined) continue;
    const key = `${item.file ?? item.name}\0${item.namespacePath}`;
    untouched.set(key, [...(untouched.get(key) ?? []), item]);
  }
  const rows: string[][] = [];
  for (const item of removed) {
    const key = `${item.file ?? item.name}\0${item.namespacePath}`;
    const group = item.nothingMade ? untouched.get(key) : undefined;
    if (!group || group.length === 1) {
      rows.push(row(item));
      continue;
    }
    if (group[0] !== item) continue; // said in the group's row, where its first one was
    rows.push(
      row({
        ...item,
        detail: `unfinished attach of ${group.length} interfaces (${namesOf(group)}), stopped before it made anything for them`,
      }),
    );
  }
  return rows;
}

/** The interfaces of a folded row: the first eight, then how many more (--json lists each). */
function namesOf(group: readonly GarbageItem[]): string {
  const names = group.map((entry) => entry.interface);
  return names.length <= 8 ? names.join(', ') : `${names.slice(0, 8).join(', ')} and ${names.length - 8} more`;
}

/** What a person should know about a gc: the records skipped, what failed and the hint, links left. */
function reportToStderr(report: GarbageReport): void {
  for (const { directory, owner } of report.claimsOnly)
    writeStderr(
      `vcnet: gc read ${directory} (owned by uid ${owner}) for claims only, as another user owns it or can write in it: the links, filters and rate limits its records name were kept, and nothing there was acted on (no record dropped, no unfinished attach finished, no file removed)\n`,
    );
  // Root's state directories closed to this user: their reasons end in one hint naming them all, said once.
  const closedRoot = report.skipped.filter((record) => record.closedRootDirectory);
  if (closedRoot.length > 0)
    writeStderr(
      `vcnet: gc skipped ${closedRoot.length === 1 ? 'a state directory' : `${closedRoot.length} state directories`} it cannot read: ${closedRoot[0]!.reason}\n`,
    );
  for (const record of report.skipped.filter((entry) => !entry.closedRootDirectory))
    writeStderr(
      record.namespaceUnseen || record.beingChanged
        ? `vcnet: gc kept the record ${record.file}: ${record.reason}\n`
        : `vcnet: gc skipped a record it cannot read: ${record.reason}\n`,
    );
  for (const failure of report.failures)
    writeStderr(`vcnet: gc could not finish in ${failure.namespacePath}: ${failure.reason}\n`);
  if (report.failures.some((failure) => isPermissionErrno(failure.errno)))
    writeStderr(`hint: ${hintForErrno('EPERM')}\n`);
  else if (report.failures.length > 0)
    writeStderr('hint: what failed is still recorded: run `vcnet gc` again once the cause is fixed\n');
  for (const { namespacePath, links, filters = [] } of report.unclaimed) {
    const left = [...links, ...filters.map((filter) => `the filter ${filter}`)];
    writeStderr(
      `vcnet: gc left ${left.join(', ')} in ${namespacePath}: no record it read names that namespace (its records may be in another state directory: name it with --state-dir; \`vcnet gc --netns ${shellWord(namespacePath)}\` removes them)\n`,
    );
  }
  for (const entry of report.withheld)
    if (entry.beingChanged) writeStderr(`vcnet: gc left ${entry.namespacePath} as it is: ${entry.reason}\n`);
  for (const item of report.absent) writeStderr(`vcnet: gc: ${item.namespacePath}: ${item.detail}\n`);
  // Stray entries (a link, a FIFO, a file) name no sandbox: one line, so they are seen (--json lists each).
  if (report.ignored.length > 0)
    writeStderr(
      `vcnet: gc passed over ${report.ignored.length} entr${report.ignored.length === 1 ? 'y' : 'ies'} of state directories that name no sandbox (${report.ignored.map((entry) => `${entry.path}: ${entry.reason}`).join('; ')}): remove them if nothing needs them\n`,
    );
  for (const { file, namespacePath, heldAt, pid, through } of report.heldOutside)
    writeStderr(
      `vcnet: gc kept the record ${file}: its namespace path ${namespacePath} is gone, but process ${pid} keeps its namespace alive through ${through === 'socket' ? 'a socket made in it' : 'a tap of it'} (${heldAt}), so what attach made is still there; detach (or CNI DEL) undoes it through that ${through}; once process ${pid} closes it, the namespace goes and gc drops the record\n`,
    );
  // In vcnet's way but not vcnet's (a veth in its group, a live record's filter): left, and why.
  for (const item of report.leftAlone)
    writeStderr(`vcnet: gc left the ${item.kind} ${item.name} in ${item.namespacePath}: ${item.detail}\n`);
}
