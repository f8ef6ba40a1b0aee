/**
 * Finds the agent's virtio-serial port in the guest. Busybox has no udev to make the
 * /dev/virtio-ports/agent.channel.0 link, so the port is found the way udev would: the port whose
 * /sys/class/virtio-ports/vportNpM/name says agent.channel.0 is /dev/vportNpM.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentPortNotFoundError } from '../errors.js';

export const AGENT_PORT_NAME = 'agent.channel.0';

export interface AgentPortSearch {
  portName?: string;
  sysfsRoot?: string;
  deviceRoot?: string;
}

/** The device path of the named port, or undefined when no port has that name (yet). */
export function findAgentPort(search: AgentPortSearch = {}): string | undefined {
  const portName = search.portName ?? AGENT_PORT_NAME;
  const classDirectory = join(search.sysfsRoot ?? '/sys', 'class/virtio-ports');
  let entries: string[];
  try {
    entries = readdirSync(classDirectory);
  } catch {
    return undefined;
  }
  for (const entry of entries.filter((name) => name.startsWith('vport')).sort()) {
    let name: string;
    try {
      name = readFileSync(join(classDirectory, entry, 'name'), 'utf8').trim();
    } catch {
      continue;
    }
    if (name === portName) return join(search.deviceRoot ?? '/dev', entry);
  }
  return undefined;
}

/** How long waitForAgentPort waits for the port and its node when the caller gives no timeoutMs. */
const AGENT_PORT_WAIT_MS = 10_000;

/**
 * Waits for the port and its device node: virtio_console may still be probing when the agent starts,
 * and devtmpfs creates the node a moment after sysfs shows the port.
 */
export async function waitForAgentPort(search: AgentPortSearch & { timeoutMs?: number } = {}): Promise<string> {
  const deadline = Date.now() + (search.timeoutMs ?? AGENT_PORT_WAIT_MS);
  for (;;) {
    const path = findAgentPort(search);
    if (path && existsSync(path)) return path;
    if (Date.now() >= deadline) {
      throw new AgentPortNotFoundError(
        search.portName ?? AGENT_PORT_NAME,
        join(search.sysfsRoot ?? '/sys', 'class/virtio-ports'),
      );
    }
    await sleep(100);
  }
}
