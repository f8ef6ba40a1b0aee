/**
 * A QMP (QEMU Machine Protocol) client over a unix socket: greeting, capabilities negotiation,
 * commands with ids matched to their replies, asynchronous events, per-command timeouts.
 *
 * QMP is newline-delimited JSON. Every command carries an `id` that QEMU echoes in its reply, so
 * several commands may be in flight and replies are matched by id, never by order. Events have no
 * id and may arrive between any two replies.
 *
 * Commands that take file descriptors (`getfd`, `add-fd`) get them as SCM_RIGHTS ancillary data
 * (`fds` in execute's options). Node's net.Socket cannot send that, so such a command goes out through
 * the native shim on the same socket (sendWithFds); hot-plug uses it (qmp-network-hotplug.ts).
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { onAbort } from '../abort-listeners.js';
import { decimalSecondsAsMs, numberOption, optionsArgument, signalOption, stringArgument } from '../arguments.js';
import { errnoOf, InvalidInputError } from '../errors.js';
import { nativeDevices, socketFileDescriptor } from '../native/devices.js';
import { QmpCommandError, QmpConnectionError, QmpTimeoutError } from './errors.js';

/** The greeting QEMU sends on a new QMP connection: its version and capabilities. */
export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

/** An asynchronous QMP event (DEVICE_DELETED, SHUTDOWN...), with QEMU's timestamp. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/**
 * Options of `QmpClient.connect`: the bound of the connect and handshake, and the client's default command
 * timeout (milliseconds).
 */
export interface QmpConnectOptions {
  /** Bound on connect + greeting + qmp_capabilities; default $VCNET_QMP_CONNECT_TIMEOUT seconds, else 30 s. */
  timeoutMs?: number;
  /** Default per-command timeout of this client. */
  commandTimeoutMs?: number;
  /** Aborting ends the wait for QEMU at once: the connection is closed, connect rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of one QMP command: its timeout (milliseconds) and the fds sent with it. */
export interface QmpExecuteOptions {
  timeoutMs?: number;
  /** File descriptors sent with the command (SCM_RIGHTS), as `getfd` and `add-fd` expect them. */
  fds?: number[];
}

/**
 * Options of `QmpClient.waitForEvent`: how long to wait (milliseconds), which events count, and a signal that
 * stops the wait.
 */
export interface QmpWaitForEventOptions {
  timeoutMs: number;
  /** Only events for which this returns true count (e.g. DEVICE_DELETED of one device id). */
  predicate?: (event: QmpEvent) => boolean;
  /** Aborting stops the wait; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

interface PendingCommand {
  command: string;
  argumentsSent: unknown;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** The events a `QmpClient` emits: each QMP `event`, and `close` with the error that closed it, if any. */
export type QmpClientEvents = {
  event: [QmpEvent];
  close: [Error | undefined];
};

/** A wait a caller may give: NaN or a string would never time out; setTimeout fires at once past 2^31 - 1 ms. */
const QMP_WAIT_RANGE = { min: 1, max: 3_600_000, integer: false, unit: 'milliseconds' } as const;

/**
 * The handshake's bound when the caller gives none. QEMU greets within milliseconds even under TCG on
 * a loaded host (measured: at most 52 ms at load 10, a TCG guest booting), but it serves one QMP
 * client at a time and greets the next only when the one before closes: the wait is for whoever
 * holds QMP, such as vcnet's own unplug, which holds it while the guest ejects the NIC (up to 20 s).
 * A timeout only happens while QEMU runs (a dead one refuses at once), so a long bound costs nothing
 * in the common case; a short one failed commands and watch changes that would have gone through.
 */
export const DEFAULT_QMP_CONNECT_TIMEOUT_MS = 30_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** The wait between connects that QEMU's full queue of QMP connections refused (EAGAIN). */
const QUEUE_FULL_RETRY_MS = 50;

/** The variable that sets the handshake's default bound, in seconds. */
export const QMP_CONNECT_TIMEOUT_VARIABLE = 'VCNET_QMP_CONNECT_TIMEOUT';

/** The handshake's bound when the caller gives none: $VCNET_QMP_CONNECT_TIMEOUT seconds, else 30 s. */
export function defaultQmpConnectTimeoutMs(): number {
  return qmpConnectTimeoutSetMs() ?? DEFAULT_QMP_CONNECT_TIMEOUT_MS;
}

/**
 * $VCNET_QMP_CONNECT_TIMEOUT in milliseconds when the user set it, else undefined: for a wait whose
 * own default is not 30 s (detach's, which must go ahead past a wedged VM).
 */
export function qmpConnectTimeoutSetMs(): number | undefined {
  const text = process.env.VCNET_QMP_CONNECT_TIMEOUT;
  if (text === undefined || text === '') return undefined;
  const accepted = 'seconds from 0.001 to 3600 (fractions allowed)';
  const timeoutMs = decimalSecondsAsMs(QMP_CONNECT_TIMEOUT_VARIABLE, text, 3600, accepted);
  if (timeoutMs < 1) throw new InvalidInputError(QMP_CONNECT_TIMEOUT_VARIABLE, text, accepted);
  return timeoutMs;
}

/** What to do about a handshake that timed out: the causes, and how to wait longer. */
function handshakeTimeoutHint(socketPath: string): string {
  return (
    `QEMU serves one QMP client at a time and greets the next only when the one before closes: another client may hold the socket (Kata's runtime, a monitoring tool, another vcnet command; \`ss -xp | grep ${socketPath}\` shows who), or QEMU is stopped or wedged. ` +
    `Try again once the other client is done; to wait longer, set ${QMP_CONNECT_TIMEOUT_VARIABLE}=<seconds> (default ${DEFAULT_QMP_CONNECT_TIMEOUT_MS / 1000}), or give QmpClient.connect a longer timeoutMs`
  );
}

/**
 * A QMP connection to a running QEMU (`QmpClient.connect(socketPath)`): commands with a deadline,
 * QMP events as EventEmitter events, and `waitForEvent` for one of them.
 */
export class QmpClient extends EventEmitter<QmpClientEvents> {
  readonly socketPath: string;
  readonly greeting: QmpGreeting;
  private readonly socket: Socket;
  private readonly commandTimeoutMs: number;
  private readonly pending = new Map<string, PendingCommand>();
  private nextId = 1;
  private closedWith: Error | undefined;
  private isClosed = false;
  /**
   * The waitForEvent calls waiting: told by dispatch and shutDown, not as listeners of this emitter,
   * so many at once (a daemon's) pass no listener limit of it (MaxListenersExceededWarning).
   */
  private readonly eventWaiters = new Set<{
    event: (event: QmpEvent) => void;
    close: (cause: Error | undefined) => void;
  }>();

  /** Connects, reads the greeting and leaves capabilities-negotiation mode. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    stringArgument(socketPath, 'socketPath', "the path of QEMU's QMP socket");
    options = optionsArgument(options, 'options', ['timeoutMs', 'commandTimeoutMs', 'signal']);
    // NaN or a string would never time out; setTimeout fires at once past 2^31 - 1 ms.
    for (const key of ['timeoutMs', 'commandTimeoutMs'] as const) {
      numberOption(options[key], key, QMP_WAIT_RANGE);
    }
    const signal = signalOption(options.signal);
    const timeoutMs = options.timeoutMs ?? defaultQmpConnectTimeoutMs();
    const deadline = Date.now() + timeoutMs;
    // QEMU queues few connections to its QMP listener (a backlog of one): while one client holds QMP,
    // two more wait, and a connection that gave up stays queued until QEMU takes it. Any other connect
    // is refused at once with EAGAIN: QMP busy, not QEMU gone, so it is tried again until the deadline.
    for (;;) {
      signal?.throwIfAborted();
      try {
        return await QmpClient.handshake(socketPath, options, timeoutMs, deadline);
      } catch (error) {
        if (!(error instanceof QmpConnectionError && errnoOf(error.cause) === 'EAGAIN')) throw error;
        if (Date.now() + QUEUE_FULL_RETRY_MS >= deadline) {
          throw new QmpConnectionError(
            `QMP handshake on ${socketPath}: QEMU's queue of QMP connections stayed full (connect EAGAIN) for ${timeoutMs} ms`,
            socketPath,
            error.cause,
            handshakeTimeoutHint(socketPath),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, QUEUE_FULL_RETRY_MS));
      }
    }
  }

  /** One connect, greeting and qmp_capabilities, bounded by `deadline` (`timeoutMs` is named in the error). */
  private static async handshake(
    socketPath: string,
    options: QmpConnectOptions,
    timeoutMs: number,
    deadline: number,
  ): Promise<QmpClient> {
    const socket = createConnection({ path: socketPath });
    socket.setEncoding('utf8');
    let client: QmpClient | undefined;
    let timedOut: QmpConnectionError | undefined;
    let aborted = false;
    const stopWaiting = options.signal
      ? onAbort(options.signal, () => {
          aborted = true;
          socket.destroy();
        })
      : undefined;
    const timer = setTimeout(
      () => {
        const awaited = client ? 'no answer to qmp_capabilities' : 'no greeting';
        timedOut = new QmpConnectionError(
          `QMP handshake on ${socketPath}: ${awaited} from QEMU within ${timeoutMs} ms`,
          socketPath,
          undefined,
          handshakeTimeoutHint(socketPath),
        );
        socket.destroy(timedOut);
      },
      Math.max(1, deadline - Date.now()),
    );
    try {
      const { greeting, rest } = await readGreeting(socket, socketPath);
      client = new QmpClient(socketPath, socket, greeting, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
      client.receive(rest);
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
      return client;
    } catch (error) {
      socket.destroy();
      if (aborted) throw options.signal?.reason;
      // Said as the handshake's timeout, not as the pending command's "connection closed" it caused.
      if (timedOut) throw timedOut;
      if (error instanceof QmpCommandError || error instanceof QmpConnectionError) throw error;
      throw new QmpConnectionError(`cannot open QMP on ${socketPath}: ${(error as Error).message}`, socketPath, error);
    } finally {
      clearTimeout(timer);
      stopWaiting?.();
    }
  }

  private constructor(socketPath: string, socket: Socket, greeting: QmpGreeting, commandTimeoutMs: number) {
    super();
    this.socketPath = socketPath;
    this.socket = socket;
    this.greeting = greeting;
    this.commandTimeoutMs = commandTimeoutMs;
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', (error) => {
      this.closedWith ??= error;
    });
    socket.on('close', () => this.shutDown(this.closedWith));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Runs one command and resolves with its `return` value. Rejects with QmpCommandError (QEMU's
   * error class and description), QmpTimeoutError, or QmpConnectionError.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: QmpExecuteOptions = {}): Promise<T> {
    try {
      numberOption(options.timeoutMs, 'timeoutMs', QMP_WAIT_RANGE);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.isClosed) {
      return Promise.reject(
        new QmpConnectionError(`QMP ${command}: connection is closed`, this.socketPath, this.closedWith),
      );
    }
    const id = `vcnet-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Forget the id: a reply that comes later is dropped in receive().
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, {
        command,
        argumentsSent: args,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
      });
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      const text = `${JSON.stringify(message)}\n`;
      if (options.fds && options.fds.length > 0) this.sendWithFds(text, options.fds, command, reject);
      else this.socket.write(text);
    });
  }

  /**
   * Node's sockets cannot carry fds, so the command goes out through the native shim on the same
   * socket, once Node's own write queue is empty (QMP reads commands in order).
   */
  private sendWithFds(text: string, fds: number[], command: string, reject: (error: Error) => void): void {
    const send = () => {
      const fd = socketFileDescriptor(this.socket);
      try {
        if (fd === undefined || fd < 0) throw new Error('the QMP socket has no file descriptor');
        nativeDevices.sendWithFds(fd, Buffer.from(text), fds);
      } catch (error) {
        reject(
          new QmpConnectionError(
            `QMP ${command}: could not send fds: ${(error as Error).message}`,
            this.socketPath,
            error as Error,
          ),
        );
      }
    };
    if (this.socket.writableLength === 0) send();
    else this.socket.once('drain', send);
  }

  /** Resolves with the first matching event that arrives after the call. Register before triggering it. */
  waitForEvent(name: string, options: QmpWaitForEventOptions): Promise<QmpEvent> {
    try {
      numberOption(options?.timeoutMs ?? Number.NaN, 'timeoutMs', QMP_WAIT_RANGE);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<QmpEvent>((resolve, reject) => {
      // One listener on a daemon's long-lived signal for all its waits (abort-listeners.ts).
      let stopWaiting: (() => void) | undefined;
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.eventWaiters.delete(waiter);
        stopWaiting?.();
        settle();
      };
      const onEvent = (event: QmpEvent) => {
        if (event.event === name && (options.predicate?.(event) ?? true)) finish(() => resolve(event));
      };
      const onClose = (cause: Error | undefined) =>
        finish(() => reject(new QmpConnectionError(`QMP closed while waiting for ${name}`, this.socketPath, cause)));
      const aborted = () => finish(() => reject(options.signal?.reason));
      const waiter = { event: onEvent, close: onClose };
      const timer = setTimeout(
        () => finish(() => reject(new QmpTimeoutError(`event ${name}`, options.timeoutMs))),
        options.timeoutMs,
      );
      if (options.signal?.aborted) return aborted();
      if (this.isClosed) return onClose(this.closedWith);
      this.eventWaiters.add(waiter);
      if (options.signal) stopWaiting = onAbort(options.signal, aborted);
    });
  }

  /** Every event from now until the connection closes (or the loop breaks). */
  async *events(): AsyncGenerator<QmpEvent, void, undefined> {
    const queue: QmpEvent[] = [];
    let wake: (() => void) | undefined;
    const onEvent = (event: QmpEvent) => {
      queue.push(event);
      wake?.();
    };
    const onClose = () => wake?.();
    this.on('event', onEvent);
    this.on('close', onClose);
    try {
      while (true) {
        const event = queue.shift();
        if (event) {
          yield event;
          continue;
        }
        if (this.isClosed) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      this.off('event', onEvent);
      this.off('close', onClose);
    }
  }

  /** Closes the connection; commands still waiting are rejected with QmpConnectionError. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.socket.end();
    // QEMU closes its side when it reads EOF; do not wait on it forever if it is wedged.
    const force = setTimeout(() => this.socket.destroy(), 1_000);
    await closed;
    clearTimeout(force);
  }

  /** `await using qmp = await QmpClient.connect(...)` closes it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private buffered = '';

  private receive(chunk: string): void {
    this.buffered += chunk;
    let newline = this.buffered.indexOf('\n');
    while (newline !== -1) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line) this.dispatch(line);
      newline = this.buffered.indexOf('\n');
    }
  }

  private dispatch(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch (error) {
      this.socket.destroy(
        new QmpConnectionError(`QMP sent something that is not JSON: ${line.slice(0, 200)}`, this.socketPath, error),
      );
      return;
    }
    if (typeof message.event === 'string') {
      this.emit('event', message as unknown as QmpEvent);
      for (const waiter of [...this.eventWaiters]) waiter.event(message as unknown as QmpEvent);
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return; // a reply to a command that already timed out
    this.pending.delete(id);
    clearTimeout(pending.timer);
    const error = message.error as { class?: string; desc?: string } | undefined;
    if (error) {
      pending.reject(
        new QmpCommandError(pending.command, error.class ?? 'GenericError', error.desc ?? '', pending.argumentsSent),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  private shutDown(cause: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(
        new QmpConnectionError(`QMP ${pending.command}: connection closed before the reply`, this.socketPath, cause),
      );
      this.pending.delete(id);
    }
    for (const waiter of [...this.eventWaiters]) waiter.close(cause);
    this.emit('close', cause);
  }
}

/** Reads up to the first newline: it must be the `{"QMP": ...}` greeting. Returns what came after it too. */
function readGreeting(socket: Socket, socketPath: string): Promise<{ greeting: QmpGreeting; rest: string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onData = (chunk: string) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline === -1) return;
      cleanup();
      const line = text.slice(0, newline);
      try {
        const greeting = JSON.parse(line) as QmpGreeting;
        if (!greeting || typeof greeting !== 'object' || !('QMP' in greeting)) throw new Error('no "QMP" key');
        resolve({ greeting, rest: text.slice(newline + 1) });
      } catch (error) {
        reject(new QmpConnectionError(`not a QMP greeting on ${socketPath}: ${line.slice(0, 200)}`, socketPath, error));
      }
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(new QmpConnectionError(`QMP socket ${socketPath} closed before the greeting`, socketPath));
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}
