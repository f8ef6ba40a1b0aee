/**
 * What an agent call that did not succeed becomes: a call that timed out is DEADLINE_EXCEEDED for the
 * classifier (not the general INTERNAL of VCNET_AGENT_STATUS), and a call the caller aborted carries
 * the caller's reason in its message and as its cause.
 */
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AgentStatusError } from '../../../src/agent/errors.js';
import { AgentClient, classifyError } from '../../../src/index.js';

/** A stream that takes every request and never answers: an agent that hangs. */
function silentAgent(): AgentClient {
  return new AgentClient(new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() }));
}

async function failure(call: Promise<unknown>): Promise<AgentStatusError> {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AgentStatusError);
  return error as AgentStatusError;
}

describe('agent call failures', () => {
  it('a call with no answer in time is classified DEADLINE_EXCEEDED', async () => {
    const client = silentAgent();
    try {
      const error = await failure(client.listRoutes({ timeoutMs: 20 }));
      expect(error.message).toBe('grpc.AgentService/ListRoutes: DEADLINE_EXCEEDED: no answer within 20 ms');
      expect(classifyError(error)).toMatchObject({ code: 'VCNET_AGENT_STATUS', agent: 'DEADLINE_EXCEEDED' });
    } finally {
      client.close();
    }
  });

  it("the agent's own statuses are kept; a status with no outcome of its own stays INTERNAL", () => {
    const notFound = new AgentStatusError(5, 'no link', 'grpc.AgentService/UpdateInterface');
    expect(classifyError(notFound).agent).toBe('NOT_FOUND');
    const dataLoss = new AgentStatusError(15, 'lost', 'grpc.AgentService/UpdateInterface');
    expect(classifyError(dataLoss).agent).toBe('INTERNAL');
  });

  it("an aborted call says the caller's reason and keeps it as the cause", async () => {
    const client = silentAgent();
    try {
      const controller = new AbortController();
      const call = failure(client.listRoutes({ timeoutMs: 5_000, signal: controller.signal }));
      const reason = new Error('user abort');
      controller.abort(reason);
      const error = await call;
      expect(error.message).toBe('grpc.AgentService/ListRoutes: CANCELLED: cancelled: user abort');
      expect(error.cause).toBe(reason);
      expect(classifyError(error).agent).toBe('CANCELLED');

      const before = failure(client.listRoutes({ signal: AbortSignal.abort('shutting down') }));
      expect((await before).message).toBe(
        'grpc.AgentService/ListRoutes: CANCELLED: cancelled before it was sent: shutting down',
      );
    } finally {
      client.close();
    }
  });
});
