/**
 * Endpoints waiting for the guest without the sandbox lock (SandboxState.guestPending): add-iface
 * records the plugged endpoint with an entry here, gives the lock back while the guest shows the NIC
 * and its agent configures it, then takes the lock again to finish or undo it. What every other
 * command needs of these entries: whose they are, whether their add-iface still runs, and which
 * endpoints a push of the whole set leaves out.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import type { GuestPending, GuestPendingCommand, SandboxState } from '../network/state/records.js';

/** The start time of process `pid` (field 22 of /proc/PID/stat, in clock ticks since boot); undefined once it is gone. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** A new entry for `endpoint`, this process's (`by`: the command it runs). */
export function guestPendingEntry(endpoint: Endpoint, by: GuestPendingCommand): GuestPending {
  const pidStart = processStart(process.pid);
  return {
    name: endpoint.name,
    podLink: endpoint.properties.link.name,
    token: randomUUID(),
    pid: process.pid,
    ...(pidStart !== undefined ? { pidStart } : {}),
    since: new Date().toISOString(),
    by,
  };
}

/** Whether the add-iface that wrote `entry` still runs (the same pid, started at the same time). */
export function guestPendingRunning(entry: GuestPending): boolean {
  const start = processStart(entry.pid);
  return start !== undefined && (entry.pidStart === undefined || entry.pidStart === start);
}

/**
 * The endpoints a push of the whole set (routes, interfaces) leaves out: those an add-iface still
 * running is waiting for the guest to show. Their routes name a NIC the guest may not have yet (the
 * agent would refuse the whole set), and their add-iface sends them itself.
 */
export function awaitedByAnother(state: SandboxState): Set<string> {
  return new Set((state.guestPending ?? []).filter((entry) => guestPendingRunning(entry)).map((entry) => entry.name));
}

/** `endpoints` without those awaitedByAnother names. */
export function withoutAwaited<T extends Endpoint>(endpoints: readonly T[], state: SandboxState): T[] {
  const awaited = awaitedByAnother(state);
  return endpoints.filter((endpoint) => !awaited.has(endpoint.name));
}

/** Whether `entry` is about `endpoint`: the same guest name and pod link. */
export function entryNames(
  entry: GuestPending,
  endpoint: { name: string; properties: { link: { name: string } } },
): boolean {
  return endpoint.name === entry.name && endpoint.properties.link.name === entry.podLink;
}

/**
 * The entries whose endpoint the record still holds (by name and pod link): an endpoint removed
 * (del-iface, the watch, an undo) takes its entry with it. Undefined when none are left.
 */
export function guestPendingOf(
  entries: readonly GuestPending[] | undefined,
  endpoints: readonly Endpoint[],
): GuestPending[] | undefined {
  if (entries === undefined) return undefined;
  const kept = entries.filter((entry) => endpoints.some((endpoint) => entryNames(entry, endpoint)));
  return kept.length > 0 ? kept : undefined;
}

/** The entries left once those with `tokens` are removed (undefined when none are). */
export function withoutEntries(
  entries: readonly GuestPending[] | undefined,
  ...tokens: string[]
): GuestPending[] | undefined {
  const kept = (entries ?? []).filter((entry) => !tokens.includes(entry.token));
  return kept.length > 0 ? kept : undefined;
}
