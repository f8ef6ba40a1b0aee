/** The push's tolerance rules: an agent without AddARPNeighbors is warned about; other errors stop it. */
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../../../src/agent/client.js';
import { AgentStatusError } from '../../../src/agent/errors.js';
import { isLinkNotFound, longestPushMs, pushGuestNetwork } from '../../../src/agent/push-network.js';
import { StatusCode } from '../../../src/agent/ttrpc/status-code.js';

function agentAnswering(neighbourError: Error | undefined, calls: string[]): AgentClient {
  return {
    updateInterface: async () => void calls.push('UpdateInterface'),
    updateRoutes: async () => {
      calls.push('UpdateRoutes');
      return [];
    },
    addArpNeighbors: async () => {
      calls.push('AddARPNeighbors');
      if (neighbourError) throw neighbourError;
    },
  } as unknown as AgentClient;
}

const push = {
  interfaces: [{ name: 'eth0', hwAddr: '02:00:00:00:00:01' }],
  routes: [{ dest: '', gateway: '10.0.0.1', device: 'eth0' }],
  neighbours: [{ device: 'eth0', lladdr: '02:00:00:00:00:fe', state: 0x80 }],
};

describe('pushGuestNetwork', () => {
  it("sends interface, routes, neighbours in Kata's order", async () => {
    const calls: string[] = [];
    const result = await pushGuestNetwork(agentAnswering(undefined, calls), push);
    expect(calls).toEqual(['UpdateInterface', 'UpdateRoutes', 'AddARPNeighbors']);
    expect(result.neighboursSent).toBe(true);
  });

  it('warns and goes on when the agent does not implement AddARPNeighbors', async () => {
    const calls: string[] = [];
    const warnings: string[] = [];
    const unimplemented = new AgentStatusError(
      StatusCode.UNIMPLEMENTED,
      'no such method',
      'grpc.AgentService/AddARPNeighbors',
    );
    const result = await pushGuestNetwork(agentAnswering(unimplemented, calls), push, {
      warn: (message) => warnings.push(message),
    });
    expect(result.neighboursSent).toBe(false);
    expect(warnings).toEqual([expect.stringContaining('old agent')]);
  });

  it('fails on any other neighbour error', async () => {
    const internal = new AgentStatusError(StatusCode.INTERNAL, 'boom', 'grpc.AgentService/AddARPNeighbors');
    await expect(pushGuestNetwork(agentAnswering(internal, []), push)).rejects.toThrow(/boom/);
  });

  it('retries a NIC the guest does not show 20 times when the agent answers at once, and for 10 s at most', async () => {
    const notFound = () => new AgentStatusError(StatusCode.NOT_FOUND, 'interface.hwAddr: no link with MAC', 'm');
    let clock = 0;
    let calls = 0;
    const answering = (takesMs: number) =>
      ({
        updateInterface: async () => {
          calls++;
          clock += takesMs;
          throw notFound();
        },
      }) as unknown as AgentClient;
    const options = {
      sleep: async (ms: number) => {
        clock += ms;
      },
      now: () => clock,
    };
    // Kata's agent says "Link not found" at once: Kata's 20 attempts, 20 ms apart.
    await expect(pushGuestNetwork(answering(1), push, options)).rejects.toThrow('no link');
    expect(calls).toBe(20);
    // An agent that waits 5 s for the NIC before answering: two attempts, not 20 (100 s).
    calls = 0;
    clock = 0;
    await expect(pushGuestNetwork(answering(5_000), push, options)).rejects.toThrow('no link');
    expect(calls).toBe(2);
  });

  it('takes at most longestPushMs: a NIC shown just before the retries stop gets a whole call more', async () => {
    // Each interface: not there for just under the 10 s of retries, then shown, and its answer takes
    // the whole call timeout; the route set and the neighbours take theirs too.
    const timeoutMs = 60_000;
    let clock = 0;
    const attempts = new Map<string, number>();
    const agent = {
      updateInterface: async (iface: { name: string }) => {
        const attempt = (attempts.get(iface.name) ?? 0) + 1;
        attempts.set(iface.name, attempt);
        if (attempt === 1) {
          clock += 9_999;
          throw new Error('Link not found');
        }
        clock += timeoutMs;
      },
      updateRoutes: async () => {
        clock += timeoutMs;
        return [];
      },
      addArpNeighbors: async () => {
        clock += timeoutMs;
      },
    } as unknown as AgentClient;
    const four = { ...push, interfaces: ['eth0', 'eth1', 'eth2', 'eth3'].map((name) => ({ name })) };
    await pushGuestNetwork(agent, four, {
      timeoutMs,
      sleep: async (ms) => {
        clock += ms;
      },
      now: () => clock,
    });
    // More than one timeout per call (6 × 60 s): each interface's retries come on top.
    expect(clock).toBe(4 * (9_999 + 20 + timeoutMs) + 2 * timeoutMs);
    expect(clock).toBeGreaterThan(6 * timeoutMs);
    expect(clock).toBeLessThanOrEqual(longestPushMs(4, timeoutMs));
  });

  it("retries only on Kata's 'Link not found' or vcnet's NOT_FOUND for a link", () => {
    expect(isLinkNotFound(new Error('Link not found (hwaddr 02:..)'))).toBe(true);
    expect(isLinkNotFound(new AgentStatusError(StatusCode.NOT_FOUND, 'interface.hwAddr: no link with MAC', 'm'))).toBe(
      true,
    );
    expect(isLinkNotFound(new AgentStatusError(StatusCode.INVALID_ARGUMENT, 'bad mask', 'm'))).toBe(false);
  });
});
