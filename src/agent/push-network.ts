/**
 * The guest network push as Kata's runtime makes it (kata_agent.go setupNetworks): UpdateInterface for
 * each interface, retried while the NIC is not visible in the guest yet; then one UpdateRoutes with the
 * sandbox's FULL route set (Kata's agent deletes every other non-kernel route); then AddARPNeighbors,
 * where an agent without that call is only warned about, as Kata warns about an old agent.
 */
import type { AgentClient, InterfaceInit, NeighbourInit, RouteInit } from './client.js';
import { AgentStatusError } from './errors.js';
import type { Route } from './generated/types_pb.js';
import { StatusCode } from './ttrpc/status-code.js';

/** Kata retries UpdateInterface 20 times, 20 ms apart, when the NIC has not appeared in the guest. */
const UPDATE_INTERFACE_ATTEMPTS = 20;
const UPDATE_INTERFACE_RETRY_DELAY_MS = 20;
/**
 * Retries stop once this long has passed since the first attempt: Kata's agent answers "Link not
 * found" at once (20 × 20 ms is then about 0.4 s), but an agent that first waits for the NIC itself
 * (vcnet's waits 5 s for one with a PCI path) would otherwise make 20 attempts last 100 s.
 */
const UPDATE_INTERFACE_RETRY_BUDGET_MS = 10_000;

/**
 * The longest pushGuestNetwork takes with `timeoutMs` for each call, for `interfaces` interfaces:
 * each interface is retried until UPDATE_INTERFACE_RETRY_BUDGET_MS has passed since its first
 * attempt, so its last attempt begins up to that budget and one retry delay after it, and may take a
 * whole `timeoutMs`; then the route set and the neighbours, `timeoutMs` each.
 */
export function longestPushMs(interfaces: number, timeoutMs: number): number {
  const perInterface = UPDATE_INTERFACE_RETRY_BUDGET_MS + UPDATE_INTERFACE_RETRY_DELAY_MS + timeoutMs;
  return interfaces * perInterface + 2 * timeoutMs;
}

export interface GuestNetworkPush {
  interfaces: InterfaceInit[];
  /** Every route of the sandbox, not only the new interface's: the agent replaces the whole set. */
  routes: RouteInit[];
  neighbours: NeighbourInit[];
}

export interface PushOptions {
  /** Deadline of each call. */
  timeoutMs?: number;
  /** Told about what is tolerated (an agent without AddARPNeighbors). */
  warn?: (message: string) => void;
  /** Waits between UpdateInterface attempts (tests shorten it). */
  sleep?: (milliseconds: number) => Promise<void>;
  /** The clock the retry budget is measured with (tests give their own). */
  now?: () => number;
}

export interface PushResult {
  /** UpdateInterface attempts per interface. */
  attempts: number[];
  /** The routes as the agent answered them; undefined when there were none to send. */
  routes?: Route[];
  neighboursSent: boolean;
}

/** "The NIC is not there yet": Kata's agent says "Link not found"; vcnet's agent answers NOT_FOUND for the link. */
export function isLinkNotFound(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.message.includes('Link not found')) return true;
  return error instanceof AgentStatusError && error.status === StatusCode.NOT_FOUND && /no link/.test(error.message);
}

const delay = (milliseconds: number) => new Promise<void>((resolve) => setTimeout(resolve, milliseconds));

export async function pushGuestNetwork(
  agent: AgentClient,
  push: GuestNetworkPush,
  options: PushOptions = {},
): Promise<PushResult> {
  const call = options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {};
  const sleep = options.sleep ?? delay;
  const now = options.now ?? Date.now;
  const attempts: number[] = [];
  for (const iface of push.interfaces) {
    const started = now();
    for (let attempt = 1; ; attempt++) {
      try {
        await agent.updateInterface(iface, call);
        attempts.push(attempt);
        break;
      } catch (error) {
        if (!isLinkNotFound(error)) throw error;
        if (attempt >= UPDATE_INTERFACE_ATTEMPTS || now() - started >= UPDATE_INTERFACE_RETRY_BUDGET_MS) throw error;
        await sleep(UPDATE_INTERFACE_RETRY_DELAY_MS);
      }
    }
  }
  const result: PushResult = { attempts, neighboursSent: false };
  if (push.routes.length > 0) result.routes = await agent.updateRoutes(push.routes, call);
  if (push.neighbours.length > 0) {
    try {
      await agent.addArpNeighbors(push.neighbours, call);
      result.neighboursSent = true;
    } catch (error) {
      if (!(error instanceof AgentStatusError && error.status === StatusCode.UNIMPLEMENTED)) throw error;
      options.warn?.('add ARP neighbors request failed due to old agent, please upgrade the guest agent');
    }
  }
  return result;
}
