/**
 * Endpoints whose hot-plug did not finish, nor its undo: a failed add-iface whose unplug the VM never
 * completed (SandboxState.unplugUnfinished), or an attach of one left part-way (model 'pending').
 * What the guest was told of their NICs is not relied on (a push may have failed before or after
 * their interface call), and the agent refuses a whole set (interfaces, routes) that names a NIC it
 * does not have: pushes of the whole set leave them out, as Kata's guest interface list
 * has no interface whose hot-plug failed. del-iface (or gc, for a pending one) finishes them.
 */
import { reportNotice } from '../diagnostics.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { isUnfinished } from '../network/model/plumbing-context.js';
import { stateDirectoryFlag } from '../network/state/default-directories.js';
import type { SandboxState, UnplugUnfinished } from '../network/state/records.js';
import { entryNames, type GuestPendingVerdicts, withoutAwaited } from './guest-pending.js';

/** A new entry for `endpoint`, whose NIC the VM kept when add-iface's undo unplugged it. */
export function unplugUnfinishedEntry(endpoint: Endpoint): UnplugUnfinished {
  return {
    name: endpoint.name,
    podLink: endpoint.properties.link.name,
    deviceId: endpoint.deviceId,
    since: new Date().toISOString(),
  };
}

/** Whether `endpoint`'s hot-plug, or the undo of it, did not finish. */
export function hotplugUnfinished(endpoint: Endpoint, state: SandboxState): boolean {
  if (isUnfinished(endpoint.plumbing)) return true;
  return (state.unplugUnfinished ?? []).some((entry) => entryNames(entry, endpoint));
}

/** What a push's note knows an endpoint left out by: its name and pod link. */
function leftOutKey(endpoint: Endpoint): string {
  return `${endpoint.name}<-${endpoint.properties.link.name}`;
}

/**
 * The endpoints a push of the whole set sends: `endpoints` less those an add-iface still waits for
 * (withoutAwaited) and those whose hot-plug or its undo did not finish. With `note`, the latter are
 * said once, in a notice for sandbox `note.sandbox` (given to `note.warn` when there is one). With
 * `note.said` (a watch's memory, which pushes for the pod's life), an endpoint already said there is
 * not said again while it stays left out; one no longer left out is dropped from it, so it is said
 * again should it be left out later. `verdicts`: the guestPending verdicts as the caller read them,
 * when it uses them again (read here otherwise).
 */
export function endpointsToPush<T extends Endpoint>(
  endpoints: readonly T[],
  state: SandboxState,
  note?: {
    sandbox: string;
    operation: string;
    stateDirectory: string;
    warn?: ((message: string) => void) | undefined;
    said?: Set<string>;
  },
  verdicts?: GuestPendingVerdicts,
): T[] {
  const awaitedLeft = withoutAwaited(endpoints, state, verdicts);
  const leftOut = awaitedLeft.filter((endpoint) => hotplugUnfinished(endpoint, state));
  const said = note?.said;
  if (said) {
    const leftOutNow = new Set(leftOut.map(leftOutKey));
    for (const key of said) if (!leftOutNow.has(key)) said.delete(key);
  }
  const toSay = said ? leftOut.filter((endpoint) => !said.has(leftOutKey(endpoint))) : leftOut;
  for (const endpoint of toSay) said?.add(leftOutKey(endpoint));
  if (note && toSay.length > 0) {
    const names = toSay.map((endpoint) => endpoint.name);
    const message = `sandbox ${note.sandbox}: ${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} left out of what the guest is told (interfaces, routes, neighbours): ${names.length > 1 ? 'their' : 'its'} hot-plug failed and the undo of it did not finish (the VM may still hold the NIC${names.length > 1 ? 's' : ''}). \`vcnet del-iface ${note.sandbox} FILE${stateDirectoryFlag(note.stateDirectory)}\` with ${names.map((name) => JSON.stringify({ name })).join(', ')} finishes ${names.length > 1 ? 'them' : 'it'} once the VM releases the NIC or has stopped`;
    const warn = note.warn;
    reportNotice(
      () => ({ operation: note.operation, endpoint: names.join(','), message }),
      warn && (() => warn(message)),
    );
  }
  return awaitedLeft.filter((endpoint) => !leftOut.includes(endpoint));
}
