/**
 * `kata-runtime iptables get|set` on a recorded sandbox: the guest's packet filter rules, read
 * (GetIPTables: what iptables-save prints) or replaced (SetIPTables: iptables-restore of the text given)
 * through the agent the record names, whatever the hypervisor. Nothing on the host or in the record
 * changes; the sandbox lock is held so that no detach removes the sandbox meanwhile.
 */
import type { AgentClient } from '../agent/client.js';
import {
  booleanOption,
  lockTimeoutOption,
  numberOption,
  optionsArgument,
  signalOption,
  stringArgument,
} from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { AgentNotRecordedError, askAgentWithin, withSandbox } from './sandbox-interfaces.js';

/** How long getIpTables/setIpTables wait for the agent, connecting and answering, unless told. */
const IPTABLES_AGENT_TIMEOUT_MS = 30_000;

/**
 * Options of `getIpTables` and `setIpTables`: IPv6 instead of IPv4, the state directory, the lock wait and
 * the agent's timeout (milliseconds), and a signal to give up.
 */
export interface IpTablesOptions {
  /** The IPv6 tables (ip6tables-save / ip6tables-restore) instead of IPv4's. */
  v6?: boolean;
  stateDirectory?: string;
  /** How long to wait for another command on the sandbox (ms); default VCNET_LOCK_TIMEOUT or 30 s. */
  lockTimeoutMs?: number;
  /** Bound on the whole exchange with the agent, connecting and answering; default 30 s. */
  timeoutMs?: number;
  /** Honoured while waiting for the sandbox lock. */
  signal?: AbortSignal;
}

function ipTablesOptions(given: IpTablesOptions): IpTablesOptions {
  const options = optionsArgument(given, 'options', ['v6', 'stateDirectory', 'lockTimeoutMs', 'timeoutMs', 'signal']);
  booleanOption(options.v6, 'v6');
  lockTimeoutOption(options.lockTimeoutMs);
  numberOption(options.timeoutMs, 'timeoutMs', { min: 1, max: 3_600_000, integer: false, unit: 'milliseconds' });
  signalOption(options.signal);
  return options;
}

async function withRecordedAgent<T>(
  id: string,
  operation: string,
  options: IpTablesOptions,
  ask: (agent: AgentClient, timeoutMs: number) => Promise<T>,
): Promise<T> {
  stringArgument(id, 'id', 'a sandbox id');
  // Nothing is written: on a read-only state directory it runs without the lock it could not take.
  return withSandbox(id, operation, { ...options, readOnly: true }, async ({ store, state }) => {
    if (!state.agentSocket) throw new AgentNotRecordedError(state.id, store.root, 'iptables');
    return askAgentWithin(state.agentSocket, options.timeoutMs ?? IPTABLES_AGENT_TIMEOUT_MS, ask);
  });
}

/** The guest's rules as iptables-save (ip6tables-save with `v6`) prints them, from the sandbox's agent. */
export async function getIpTables(id: string, options: IpTablesOptions = {}): Promise<Uint8Array> {
  options = ipTablesOptions(options);
  return withRecordedAgent(id, 'getIpTables', options, (agent, timeoutMs) =>
    agent.getIpTables({ v6: options.v6 === true, timeoutMs }),
  );
}

/**
 * Replaces the guest's tables that `rules` (iptables-save text) names, with iptables-restore
 * (ip6tables-restore with `v6`) run by the sandbox's agent; answers what it printed (usually nothing).
 */
export async function setIpTables(
  id: string,
  rules: string | Uint8Array,
  options: IpTablesOptions = {},
): Promise<Uint8Array> {
  options = ipTablesOptions(options);
  if (typeof rules !== 'string' && !(rules instanceof Uint8Array)) {
    throw new InvalidInputError('rules', rules, 'the rules as iptables-save text: a string or a Uint8Array');
  }
  return withRecordedAgent(id, 'setIpTables', options, (agent, timeoutMs) =>
    agent.setIpTables(rules, { v6: options.v6 === true, timeoutMs }),
  );
}
