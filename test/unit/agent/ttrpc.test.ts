/** ttrpc client and server against each other over an in-memory byte stream, and against hand-made frames. */
import { getEventListeners } from 'node:events';
import { type Duplex, duplexPair } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentStatusError } from '../../../src/agent/errors.js';
import { KeyValueSchema, RequestSchema, ResponseSchema } from '../../../src/agent/generated/ttrpc_pb.js';
import { TtrpcClient } from '../../../src/agent/ttrpc/client.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../../src/agent/ttrpc/frame.js';
import type { UnaryMethod } from '../../../src/agent/ttrpc/method.js';
import { type CallContext, TtrpcServer } from '../../../src/agent/ttrpc/server.js';
import { StatusCode } from '../../../src/agent/ttrpc/status-code.js';

// A tiny service for the tests: KeyValue in, KeyValue out.
const echo: UnaryMethod<typeof KeyValueSchema, typeof KeyValueSchema> = {
  service: 'test.Echo',
  method: 'Echo',
  input: KeyValueSchema,
  output: KeyValueSchema,
};
const slow = { ...echo, method: 'Slow' };
const fail = { ...echo, method: 'Fail' };

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function serverAndClient(server = echoServer()) {
  const [clientSide, serverSide] = duplexPair();
  const connection = server.serve(serverSide);
  const client = new TtrpcClient(clientSide);
  cleanups.push(() => {
    client.close();
    connection.close();
  });
  return { client, connection, contexts: seenContexts };
}

const seenContexts: CallContext[] = [];
function echoServer(): TtrpcServer {
  seenContexts.length = 0;
  return new TtrpcServer()
    .register(echo, async (request, context) => {
      seenContexts.push(context);
      // Later requests answer sooner: answers come back out of order.
      await sleep(Number(request.value) || 0);
      return { key: request.key, value: `echo ${request.key}` };
    })
    .register(slow, async (_request, context) => {
      seenContexts.push(context);
      await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
      return { key: 'late' };
    })
    .register(fail, async (request) => {
      if (request.key === 'typed')
        throw new AgentStatusError(StatusCode.NOT_FOUND, 'no link with MAC 02:00:00:00:00:01', 'x');
      throw new Error('kernel said no');
    });
}

/** Writes frames at a server by hand and reads its answers. */
function rawPeer(server = echoServer()) {
  const [peer, serverSide] = duplexPair();
  const connection = server.serve(serverSide);
  cleanups.push(() => {
    connection.close();
    peer.destroy();
  });
  const decoder = new FrameDecoder();
  const answers: { streamId: number; code: number; message: string; payload: Uint8Array }[] = [];
  peer.on('data', (chunk: Buffer) => {
    for (const frame of decoder.push(chunk)) {
      if (frame.kind !== 'frame') continue;
      expect(frame.header.type).toBe(FrameType.RESPONSE);
      const response = fromBinary(ResponseSchema, frame.payload);
      answers.push({
        streamId: frame.header.streamId,
        code: response.status?.code ?? 0,
        message: response.status?.message ?? '',
        payload: response.payload,
      });
    }
  });
  const request = (streamId: number, method = 'Echo', key = 'k') =>
    encodeFrame(
      streamId,
      FrameType.REQUEST,
      0,
      toBinary(
        RequestSchema,
        create(RequestSchema, {
          service: 'test.Echo',
          method,
          payload: toBinary(KeyValueSchema, create(KeyValueSchema, { key })),
        }),
      ),
    );
  const waitFor = async (count: number) => {
    for (let i = 0; i < 200 && answers.length < count; i++) await sleep(5);
    return answers;
  };
  return { peer: peer as Duplex, request, answers, waitFor };
}

describe('TtrpcClient with TtrpcServer', () => {
  it('makes a typed call', async () => {
    const { client } = serverAndClient();
    const answer = await client.call(echo, { key: 'hello' });
    expect(answer.key).toBe('hello');
    expect(answer.value).toBe('echo hello');
  });

  it('keeps many calls in flight on odd, increasing stream ids and matches answers out of order', async () => {
    const { client, contexts } = serverAndClient();
    const calls = Array.from({ length: 20 }, (_, i) =>
      client.call(echo, { key: `k${i}`, value: String((20 - i) * 2) }),
    );
    expect(client.inFlight).toBe(20);
    const answers = await Promise.all(calls);
    expect(answers.map((answer) => answer.value)).toEqual(Array.from({ length: 20 }, (_, i) => `echo k${i}`));
    const ids = contexts.map((context) => context.streamId);
    expect(ids).toEqual(Array.from({ length: 20 }, (_, i) => 2 * i + 1));
    expect(client.inFlight).toBe(0);
  });

  it('enforces a per-call deadline, sends it as timeout_nano, and ignores the late answer', async () => {
    const { client, contexts } = serverAndClient();
    const error = await client.call(slow, { key: 'x' }, { timeoutMs: 80 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentStatusError);
    expect(error).toMatchObject({
      status: StatusCode.DEADLINE_EXCEEDED,
      local: true,
      code: 'VCNET_AGENT_STATUS',
      statusName: 'DEADLINE_EXCEEDED',
    });
    // Ended by this call's own 80 ms, said in the error, not by a clock reading a loaded machine skews.
    expect((error as Error).message).toContain('no answer within 80 ms');
    // The server got the same deadline: its handler was told to stop.
    await sleep(30);
    expect(contexts[0]!.signal.aborted).toBe(true);
    // The late answer to the expired call does not disturb the next one.
    expect((await client.call(echo, { key: 'after' })).value).toBe('echo after');
  });

  it("turns an error status into AgentStatusError with the agent's code and message", async () => {
    const { client } = serverAndClient();
    const typed = await client.call(fail, { key: 'typed' }).catch((e: unknown) => e);
    expect(typed).toBeInstanceOf(AgentStatusError);
    expect(typed).toMatchObject({
      status: StatusCode.NOT_FOUND,
      statusName: 'NOT_FOUND',
      statusMessage: 'no link with MAC 02:00:00:00:00:01',
      method: 'test.Echo/Fail',
      local: false,
    });
    const plain = await client.call(fail, { key: 'plain' }).catch((e: unknown) => e);
    expect(plain).toMatchObject({ status: StatusCode.INTERNAL, statusMessage: 'kernel said no' });
  });

  it('answers UNIMPLEMENTED for an unknown service or method', async () => {
    const { client } = serverAndClient();
    await expect(client.call({ ...echo, method: 'Nope' }, {})).rejects.toMatchObject({
      status: StatusCode.UNIMPLEMENTED,
      statusMessage: 'method Nope',
    });
    await expect(client.call({ ...echo, service: 'other.Service' }, {})).rejects.toMatchObject({
      status: StatusCode.UNIMPLEMENTED,
      statusMessage: 'service other.Service',
    });
  });

  it('fails calls in flight with UNAVAILABLE when the connection closes, and later calls at once', async () => {
    const { client, connection } = serverAndClient();
    const pending = client.call(slow, { key: 'x' });
    await sleep(10);
    connection.close();
    await expect(pending).rejects.toMatchObject({ status: StatusCode.UNAVAILABLE, local: true });
    await expect(client.call(echo, { key: 'y' })).rejects.toMatchObject({ status: StatusCode.UNAVAILABLE });
  });

  it('refuses to send a request over 4 MiB', async () => {
    const { client } = serverAndClient();
    await expect(client.call(echo, { key: 'x'.repeat(5 << 20) })).rejects.toMatchObject({
      status: StatusCode.RESOURCE_EXHAUSTED,
      local: true,
    });
    expect((await client.call(echo, { key: 'small' })).key).toBe('small');
  });

  it('cancels a call through its AbortSignal', async () => {
    const { client } = serverAndClient();
    const controller = new AbortController();
    const pending = client.call(slow, { key: 'x' }, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ status: StatusCode.CANCELLED });
  });

  it('15 calls in flight with one signal add one abort listener to it, and an abort cancels all', async () => {
    const { client } = serverAndClient();
    const controller = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const pending = Array.from({ length: 15 }, () =>
        client.call(slow, { key: 'x' }, { signal: controller.signal }).catch((error: unknown) => error),
      );
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
      controller.abort();
      for (const outcome of await Promise.all(pending)) expect(outcome).toMatchObject({ status: StatusCode.CANCELLED });
      await sleep(20);
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
      expect(warnings.map((warning) => warning.name)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('reads answers that arrive one byte at a time', async () => {
    const [clientSide, fakeServer] = duplexPair();
    const client = new TtrpcClient(clientSide);
    cleanups.push(() => client.close());
    const decoder = new FrameDecoder();
    fakeServer.on('data', async (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind !== 'frame') continue;
        const answer = toBinary(
          ResponseSchema,
          create(ResponseSchema, {
            status: { code: 0 },
            payload: toBinary(KeyValueSchema, create(KeyValueSchema, { key: 'dribble' })),
          }),
        );
        for (const byte of encodeFrame(frame.header.streamId, FrameType.RESPONSE, 0, answer)) {
          fakeServer.write(Buffer.from([byte]));
          await sleep(0);
        }
      }
    });
    expect((await client.call(echo, { key: 'x' })).key).toBe('dribble');
  });
});

describe('TtrpcServer against hand-made frames', () => {
  it('handles a request split into pieces', async () => {
    const { peer, request, waitFor } = rawPeer();
    const frame = request(1);
    for (const byte of frame) peer.write(Buffer.from([byte]));
    const [answer] = await waitFor(1);
    expect(answer).toMatchObject({ streamId: 1, code: StatusCode.OK });
    expect(fromBinary(KeyValueSchema, answer!.payload).value).toBe('echo k');
  });

  it('answers INVALID_ARGUMENT for even stream ids, reused ids and undecodable requests', async () => {
    const { peer, request, waitFor } = rawPeer();
    peer.write(request(2));
    peer.write(request(5));
    peer.write(request(3));
    peer.write(encodeFrame(7, FrameType.REQUEST, 0, Buffer.from([0xff, 0xff, 0xff])));
    const answers = await waitFor(4);
    const byId = new Map(answers.map((a) => [a.streamId, a]));
    expect(byId.get(2)).toMatchObject({
      code: StatusCode.INVALID_ARGUMENT,
      message: 'StreamID must be odd for client initiated streams',
    });
    expect(byId.get(5)).toMatchObject({ code: StatusCode.OK });
    expect(byId.get(3)).toMatchObject({
      code: StatusCode.INVALID_ARGUMENT,
      message: 'StreamID cannot be re-used and must increment',
    });
    expect(byId.get(7)!.code).toBe(StatusCode.INVALID_ARGUMENT);
    expect(byId.get(7)!.message).toMatch(/^unmarshal request error/);
  });

  it('answers INVALID_ARGUMENT for a request whose payload is not the method input', async () => {
    const { peer, waitFor } = rawPeer();
    const body = toBinary(
      RequestSchema,
      create(RequestSchema, { service: 'test.Echo', method: 'Echo', payload: new Uint8Array([0x0a, 0x05, 0x41]) }),
    );
    peer.write(encodeFrame(1, FrameType.REQUEST, 0, body));
    const [answer] = await waitFor(1);
    expect(answer!.code).toBe(StatusCode.INVALID_ARGUMENT);
    expect(answer!.message).toContain('undecodable ttrpc.KeyValue');
  });

  it('rejects an oversized frame with RESOURCE_EXHAUSTED, skips its data, and serves the next request', async () => {
    const { peer, request, waitFor } = rawPeer();
    const header = Buffer.alloc(10);
    header.writeUInt32BE((4 << 20) + 1, 0);
    header.writeUInt32BE(1, 4);
    header.writeUInt8(FrameType.REQUEST, 8);
    peer.write(header);
    const data = Buffer.alloc((4 << 20) + 1, 0x5a);
    for (let offset = 0; offset < data.length; offset += 65536) peer.write(data.subarray(offset, offset + 65536));
    peer.write(request(3));
    const answers = await waitFor(2);
    expect(answers[0]).toMatchObject({ streamId: 1, code: StatusCode.RESOURCE_EXHAUSTED });
    expect(answers[0]!.message).toContain('exceed maximum message size of 4194304');
    expect(answers[1]).toMatchObject({ streamId: 3, code: StatusCode.OK });
  });

  it('answers data frames (no streams here) with INVALID_ARGUMENT and ignores frame types it does not know', async () => {
    const { peer, request, waitFor, answers } = rawPeer();
    peer.write(encodeFrame(1, FrameType.DATA, 0, Buffer.from('x')));
    peer.write(encodeFrame(3, 9, 0, Buffer.from('future')));
    peer.write(request(5));
    await waitFor(2);
    await sleep(20);
    expect(answers.map((a) => [a.streamId, a.code])).toEqual([
      [1, StatusCode.INVALID_ARGUMENT],
      [5, StatusCode.OK],
    ]);
  });

  it('never throws on random bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { minLength: 1, maxLength: 20 }),
        async (chunks) => {
          const { peer, answers } = rawPeer();
          for (const chunk of chunks) peer.write(Buffer.from(chunk));
          await sleep(1);
          // Whatever came back is well-formed answers with a status.
          for (const answer of answers) expect(typeof answer.code).toBe('number');
        },
      ),
      { numRuns: 150 },
    );
  });
});
