/**
 * Connects to a unix socket that may not be there yet. QEMU creates the agent's chardev socket when it
 * starts, and a guest boots for seconds; so a missing or refusing socket is retried until a deadline,
 * each attempt bounded by its own timeout. Other errors (EACCES, ENOTSOCK) will not fix themselves and
 * fail at once.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentConnectError } from './errors.js';

export interface UnixConnectOptions {
  /** Bound of one attempt; default 2000 ms. */
  connectTimeoutMs?: number;
  /** Give up after this long in all; default 60 s (a TCG guest takes ~10 s to boot node). */
  deadlineMs?: number;
  /** Pause between attempts; default 100 ms. */
  retryIntervalMs?: number;
  signal?: AbortSignal;
}

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN', 'ETIMEDOUT']);

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

export async function connectUnixSocket(path: string, options: UnixConnectOptions = {}): Promise<Socket> {
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const deadlineMs = options.deadlineMs ?? 60_000;
  const retryIntervalMs = options.retryIntervalMs ?? 100;
  const started = Date.now();
  let attempts = 0;
  for (;;) {
    attempts += 1;
    const remaining = deadlineMs - (Date.now() - started);
    try {
      return await attempt(path, Math.max(1, Math.min(connectTimeoutMs, remaining)));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      const elapsed = Date.now() - started;
      if (!RETRYABLE.has(code) || elapsed + retryIntervalMs >= deadlineMs || options.signal?.aborted) {
        throw new AgentConnectError(path, attempts, elapsed, error);
      }
      try {
        await sleep(retryIntervalMs, undefined, { signal: options.signal });
      } catch {
        throw new AgentConnectError(path, attempts, Date.now() - started, new Error('cancelled'));
      }
    }
  }
}
