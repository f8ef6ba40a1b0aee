/**
 * What add-iface, hot-plug and `vcnet watch` tell the guest agent about endpoints, in Kata's order
 * (pushGuestNetwork): their interfaces, then the sandbox's full route set, then their neighbours.
 * The full set is what the sandbox's endpoints give (generateGuestNetwork), or once update-routes
 * has given one, that set as the NICs changed it since.
 */
import type { AgentClient } from '../agent/client.js';
import { interfaceFromJson, neighboursFromJson, routesFromJson } from '../agent/kata-network-json.js';
import { type PushResult, pushGuestNetwork } from '../agent/push-network.js';
import { reportNotice } from '../diagnostics.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type GuestRoute, generateGuestNetwork, noticeDroppedGuestRoutes } from '../network/guest.js';

/**
 * Every route the guest should have. Until update-routes sets the full set, what the endpoints give;
 * after it, the set it gave, kept in step with the NICs by recordedRoutesAfter.
 */
export function sandboxRouteSet(all: readonly Endpoint[], recorded: readonly GuestRoute[] | undefined): GuestRoute[] {
  if (recorded === undefined) return generateGuestNetwork(all).routes;
  // A route of an interface removed since would name a device the guest no longer has.
  const present = new Set(all.map((endpoint) => endpoint.name));
  return recorded.filter((route) => present.has(route.device));
}

/**
 * The recorded full set (update-routes) after a change of NICs, as the guest's kernel keeps it: a
 * removed NIC takes its routes; an added NIC brings the routes its pod link has, and a pod link
 * whose routes changed (vcnet watch) gets its new ones. Undefined while update-routes was never used.
 */
export function recordedRoutesAfter(
  recorded: readonly GuestRoute[] | undefined,
  change: { removed?: readonly Endpoint[]; added?: readonly Endpoint[] },
): GuestRoute[] | undefined {
  if (recorded === undefined) return undefined;
  const replaced = new Set([...(change.removed ?? []), ...(change.added ?? [])].map((endpoint) => endpoint.name));
  const kept = recorded.filter((route) => !replaced.has(route.device));
  // The agent keeps the last route sent to a destination: a NIC's route to one the given set already
  // routes would take it over. The set given has no metrics to compare, and was asked for: it stays.
  const taken = new Set(kept.map((route) => `${route.family} ${route.dest}`));
  return [
    ...kept,
    ...generateGuestNetwork(change.added ?? []).routes.filter((route) => !taken.has(`${route.family} ${route.dest}`)),
  ];
}

export function pushEndpoints(
  agent: AgentClient,
  endpoints: readonly Endpoint[],
  all: readonly Endpoint[],
  recordedRoutes: readonly GuestRoute[] | undefined,
  options: { timeoutMs?: number; sandbox?: string; warn?: (message: string) => void } = {},
): Promise<PushResult> {
  const guest = generateGuestNetwork(endpoints);
  if (recordedRoutes === undefined) {
    noticeDroppedGuestRoutes(all, () => ({
      operation: 'push',
      endpoint: endpoints.map((endpoint) => endpoint.name).join(','),
      ...(options.sandbox ? { details: { sandbox: options.sandbox } } : {}),
    }));
  }
  // The library writes nothing itself: each warning is published on vcnet:notice, given to the
  // caller's warn, and only when neither takes it, a process warning.
  const warn = (message: string): void => {
    const handler = options.warn;
    reportNotice(
      () => ({
        operation: 'push',
        endpoint: endpoints.map((endpoint) => endpoint.name).join(','),
        message,
        ...(options.sandbox ? { details: { sandbox: options.sandbox } } : {}),
      }),
      handler && (() => handler(message)),
      // The push's notice names the sandbox in its details only: the warning names it in its text.
      (event) => `${options.sandbox ? `sandbox ${options.sandbox}: ` : ''}${event.message}`,
    );
  };
  return pushGuestNetwork(
    agent,
    {
      interfaces: guest.interfaces.map((entry) => interfaceFromJson(entry)),
      routes: routesFromJson(sandboxRouteSet(all, recordedRoutes)),
      neighbours: neighboursFromJson(guest.neighbours),
    },
    {
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      warn,
    },
  );
}
