/**
 * configure-guest: once the VM has booted, tells its agent the sandbox's whole network, as Kata's
 * runtime does at sandbox start (setupNetworks): every interface (UpdateInterface, retried while the
 * NIC is not there yet), then the full route set (UpdateRoutes), then the permanent neighbours.
 * attach has to run before the VM starts (the hypervisor opens the taps), so this is its second half.
 */
import { AgentClient } from '../agent/client.js';
import { type KataRouteJson, routeToJson } from '../agent/kata-network-json.js';
import { functionOption, lockTimeoutOption, optionsArgument, signalOption, stringOption } from '../arguments.js';
import { reportNotice } from '../diagnostics.js';
import { InvalidInputError } from '../errors.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { generateGuestNetwork } from '../network/guest.js';
import { stateDirectoryFlag } from '../network/state/default-directories.js';
import type { SandboxState } from '../network/state/records.js';
import { shellWord } from '../shell-word.js';
import {
  entryNames,
  type GuestPendingVerdicts,
  guessedWords,
  guestPendingVerdicts,
  withoutEntries,
} from './guest-pending.js';
import { pushEndpoints } from './guest-push.js';
import { withSandbox } from './sandbox-interfaces.js';
import { endpointsToPush } from './unplug-unfinished.js';

/** configureGuest's options: where the record is, the agent's socket, the deadlines. */
export interface ConfigureGuestOptions {
  stateDirectory?: string;
  /** How long to wait for another command on the sandbox (ms); default VCNET_LOCK_TIMEOUT or 30 s. */
  lockTimeoutMs?: number;
  /** The agent's socket; default the one attachSandbox recorded (its agentSocket option). */
  agentSocket?: string;
  /** Deadline (ms) for connecting to the agent and for each call; a missing NIC gets Kata's fixed retries. Default 60000. */
  timeoutMs?: number;
  /**
   * Where the push's warnings go (a neighbour list the agent refused). Each is also published on
   * vcnet:notice; with no warn and no subscriber there, it is a process warning of type VcnetWarning.
   */
  warn?: (message: string) => void;
  /**
   * Aborting rejects with the signal's reason while the call waits for the sandbox lock, or before it
   * connects to the agent; once the push has begun it runs to its end.
   */
  signal?: AbortSignal;
}

/** What configureGuest sent and the agent answered. */
export interface ConfigureGuestResult {
  /** The guest interfaces configured, by name, in the order they were sent. */
  interfaces: string[];
  /** The guest's route table as the agent answered it (its kernel routes included), as Kata prints it. */
  routes: KataRouteJson[];
  /** Neighbours the agent set (permanent ones and reachable gateways). */
  neighbours: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * Tells a booted VM's agent the attached sandbox `id`'s network (`vcnet configure-guest`): every
 * interface, the full route set, the permanent neighbours. Resolves with what the agent took.
 */
export async function configureGuest(id: string, options: ConfigureGuestOptions = {}): Promise<ConfigureGuestResult> {
  options = optionsArgument(options, 'options', [
    'stateDirectory',
    'lockTimeoutMs',
    'agentSocket',
    'timeoutMs',
    'warn',
    'signal',
  ]);
  signalOption(options.signal);
  lockTimeoutOption(options.lockTimeoutMs);
  functionOption(options.warn, 'warn');
  stringOption(options.agentSocket, 'agentSocket', 'a socket path or hvsock://PATH:PORT');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 3_600_000) {
    throw new InvalidInputError('timeoutMs', timeoutMs, 'milliseconds from 1 to 3600000');
  }
  return withSandbox(id, 'configureGuest', options, async ({ store, state, network }) => {
    const socket = options.agentSocket ?? state.agentSocket;
    if (!socket) {
      // The library's option; the CLI reports it under its flag (src/cli/commands/configure-guest.ts).
      throw new InvalidInputError(
        'agentSocket',
        undefined,
        "the guest agent's socket",
        `sandbox ${id} has none recorded: pass agentSocket, or give one to attachSandbox (its agentSocket option) when the VM runs`,
      );
    }
    options.signal?.throwIfAborted();
    // An add-iface still waiting for the guest sends its NIC itself (the guest may not show it yet);
    // one that was stopped meanwhile left its NIC plugged: told here, and its entry cleared after.
    // Its verdicts read once: what is left out and what is said of it must not disagree.
    const verdicts = guestPendingVerdicts(state);
    const endpoints = endpointsToPush(
      network.endpoints(),
      state,
      { sandbox: id, operation: 'configure-guest', stateDirectory: store.root, warn: options.warn },
      verdicts,
    );
    noteGuessedWaits(id, store.root, state, verdicts, network.endpoints(), endpoints, options.warn);
    // Only the entries of what this push sends are cleared after it: an add-iface stopped during the
    // push (its entry running when it was left out here) sent its NIC to nobody, and stays pending.
    const sent = (state.guestPending ?? []).filter((entry) =>
      endpoints.some((endpoint) => entryNames(entry, endpoint)),
    );
    // A VM just started: its agent opens the port a few seconds in (longer under TCG).
    const agent = await AgentClient.connect(socket, { deadlineMs: timeoutMs });
    try {
      const pushed = await pushEndpoints(agent, endpoints, endpoints, state.guestRoutes, {
        timeoutMs,
        sandbox: id,
        ...(options.warn ? { warn: options.warn } : {}),
      });
      if (sent.length > 0) {
        const left = withoutEntries(state.guestPending, ...sent.map((entry) => entry.token));
        store.write({ ...state, guestPending: left });
      }
      const guest = generateGuestNetwork(endpoints);
      return {
        interfaces: guest.interfaces.map((entry) => entry.name),
        routes: (pushed.routes ?? []).map(routeToJson),
        // A refused neighbour list is a warning, not a failure (as in Kata): then none were set.
        neighbours: pushed.neighboursSent ? guest.neighbours.length : 0,
      };
    } finally {
      agent.close();
    }
  });
}

/**
 * Says which endpoints this push left to the add-iface (or watch) that plugged them because that
 * command is taken as still waiting for the guest by a guess (its PID namespace out of sight): a
 * guess may be wrong (a command killed there), and until its time passes nobody sends that NIC.
 * A verdict told by the command's process needs no word: that command sends the NIC itself.
 */
function noteGuessedWaits(
  id: string,
  stateDirectory: string,
  state: SandboxState,
  verdicts: GuestPendingVerdicts,
  all: readonly Endpoint[],
  sent: readonly Endpoint[],
  warn: ((message: string) => void) | undefined,
): void {
  for (const entry of state.guestPending ?? []) {
    const endpoint = all.find((candidate) => entryNames(entry, candidate));
    if (endpoint === undefined || sent.includes(endpoint)) continue;
    const verdict = verdicts.get(entry.token);
    if (!verdict?.running) continue;
    const guessed = guessedWords(entry, verdict);
    if (guessed === undefined) continue;
    const command = entry.by === 'watch' ? '`vcnet watch`' : 'add-iface';
    const message = `sandbox ${id}: ${entry.name} is left to the ${command} that plugged it, taken as still waiting for the guest to configure it (${guessed}); should that ${command} have stopped, \`vcnet configure-guest --sandbox ${shellWord(id)}${stateDirectoryFlag(stateDirectory)}\` sends ${entry.name} once that time has passed`;
    reportNotice(
      () => ({ operation: 'configure-guest', endpoint: entry.name, message }),
      warn && (() => warn(message)),
    );
  }
}
