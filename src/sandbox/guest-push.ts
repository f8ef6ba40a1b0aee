/**
 * What add-iface, hot-plug and `vcnet watch` tell the guest agent about endpoints, in Kata's order
 * (pushGuestNetwork): their interfaces, then the sandbox's full route set, then their neighbours.
 * The full set is what the sandbox's endpoints give (generateGuestNetwork), with the routes set by
 * update-routes in place of the derived ones of the devices those name.
 */
import type { AgentClient } from '../agent/client.js';
import { interfaceFromJson, neighboursFromJson, routesFromJson } from '../agent/kata-network-json.js';
import { type PushResult, pushGuestNetwork } from '../agent/push-network.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { type GuestRoute, generateGuestNetwork } from '../network/guest.js';

/** Every route the guest should have: recorded update-routes routes win for the devices they name. */
export function sandboxRouteSet(all: readonly Endpoint[], recorded: readonly GuestRoute[] | undefined): GuestRoute[] {
  const derived = generateGuestNetwork(all).routes;
  // Recorded routes of an interface removed since then would name a device the guest no longer has.
  const present = new Set(all.map((endpoint) => endpoint.name));
  const kept = (recorded ?? []).filter((route) => present.has(route.device));
  const overridden = new Set(kept.map((route) => route.device));
  return [...kept, ...derived.filter((route) => !overridden.has(route.device))];
}

export function pushEndpoints(
  agent: AgentClient,
  endpoints: readonly Endpoint[],
  all: readonly Endpoint[],
  recordedRoutes: readonly GuestRoute[] | undefined,
  options: { timeoutMs?: number; sandbox?: string; warn?: (message: string) => void } = {},
): Promise<PushResult> {
  const guest = generateGuestNetwork(endpoints);
  // The library logs nothing itself: a caller may take the warnings, else Node's warning channel does.
  const warn =
    options.warn ??
    ((message: string) =>
      process.emitWarning(`${options.sandbox ? `sandbox ${options.sandbox}: ` : ''}${message}`, 'VcnetWarning'));
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
