/**
 * Connects to a unix socket that may not be there yet. QEMU creates the agent's chardev socket when it
 * starts, and a guest boots for seconds; so a missing or refusing socket is retried until a deadline,
 * each attempt bounded by its own timeout. Other errors (EACCES, ENOTSOCK) will not fix themselves and
 * fail at once.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentConnectError } from './errors.js';

/**
 * How to connect to an agent's Unix socket: each attempt's bound, the overall deadline and the pause between
 * attempts, all in milliseconds (a booting guest refuses connections at first).
 */
export interface UnixConnectOptions {
  /** Bound of one attempt; default 2000 ms. */
  connectTimeoutMs?: number;
  /** Give up after this long in all; default 60 s (a TCG guest takes ~10 s to boot node). */
  deadlineMs?: number;
  /** Pause between attempts; default 100 ms. */
  retryIntervalMs?: number;
  signal?: AbortSignal;
}

/**
 * A protocol spoken on each connection before it is handed over (hybrid vsock's CONNECT), and how
 * a failure names the target instead of the socket path.
 */
export interface ConnectHandshake {
  /**
   * Runs on the connected socket within `timeoutMs` (what is left of the deadline). A rejection with
   * `retryable: true` is retried as a refused connect is; any other fails at once. It destroys the
   * socket when it rejects.
   */
  run(socket: Socket, timeoutMs: number): Promise<void>;
  /** What the error names (e.g. hvsock://PATH:PORT), and its hint. */
  address: string;
  hint: string;
}

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN', 'ETIMEDOUT']);

function retryable(error: unknown): boolean {
  return (
    RETRYABLE.has((error as NodeJS.ErrnoException).code ?? '') || (error as { retryable?: unknown }).retryable === true
  );
}

/** A connect or handshake that timed out (ETIMEDOUT, or a handshake marked `timedOut`). */
function ranOutOfTime(error: unknown): boolean {
  return (error as { code?: unknown }).code === 'ETIMEDOUT' || (error as { timedOut?: unknown }).timedOut === true;
}

function attempt(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

export async function connectUnixSocket(
  path: string,
  options: UnixConnectOptions = {},
  handshake?: ConnectHandshake,
): Promise<Socket> {
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const deadlineMs = options.deadlineMs ?? 60_000;
  const retryIntervalMs = options.retryIntervalMs ?? 100;
  const started = Date.now();
  const remaining = () => Math.max(1, deadlineMs - (Date.now() - started));
  const failed = (attempts: number, cause: unknown, deadlineReached = false) =>
    new AgentConnectError(handshake?.address ?? path, attempts, Date.now() - started, cause, handshake?.hint, {
      deadlineReached,
    });
  let attempts = 0;
  /** Why the last attempt that is worth retrying failed (a missing socket, no listener yet). */
  let lastRetryable: unknown;
  for (;;) {
    attempts += 1;
    try {
      const socket = await attempt(path, Math.min(connectTimeoutMs, remaining()));
      await handshake?.run(socket, remaining());
      return socket;
    } catch (error) {
      const elapsed = Date.now() - started;
      if (!retryable(error) || elapsed + retryIntervalMs >= deadlineMs || options.signal?.aborted) {
        // An attempt that ran out of the time left to the deadline says only that: the reason the
        // attempts before it failed is the one to give (a loaded machine can start the last attempt
        // a millisecond before the deadline).
        const cutShort = elapsed >= deadlineMs && lastRetryable !== undefined && ranOutOfTime(error);
        throw failed(
          attempts,
          cutShort ? lastRetryable : error,
          (retryable(error) || ranOutOfTime(error)) && !options.signal?.aborted,
        );
      }
      lastRetryable = error;
      try {
        await sleep(retryIntervalMs, undefined, { signal: options.signal });
      } catch {
        // The caller's reason, as a call cancelled by the same signal gives it.
        const reason = options.signal?.reason;
        throw failed(
          attempts,
          new Error(`cancelled: ${reason instanceof Error ? reason.message : String(reason ?? 'aborted')}`, {
            cause: reason,
          }),
        );
      }
    }
  }
}
