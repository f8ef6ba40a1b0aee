/**
 * The CLI's and the CNI plugin's logger: lines go to stderr (stdout stays clean for --json and for
 * the CNI result), as JSON lines or pretty on a TTY. The library never logs; log-subscriber.ts turns
 * its diagnostics channel events into these lines.
 *
 * pino is loaded when the first line at an enabled level is written, not before: most commands
 * print no log line at the default level (warn), and loading pino is about a fifth of `vcnet`'s
 * start. Until then the logger answers `level` and `isLevelEnabled()` from pino's level numbers, and
 * calls below the level do nothing.
 *
 * Every line carries the same four keys, null where they do not apply (docs/diagnostics.md):
 * `operation`, `sandbox`, `netns` and `endpoint`. The program binds them once (bindLogContext: the
 * CLI from the command and its --sandbox/--netns, vcnet-cni from CNI_*); a line's own endpoint and
 * netns override them (log-subscriber.ts gives a library event's), see mergeLogContext. They come from
 * pino's `mixin`, not from a child logger: pino writes a key bound on a child and given again in a
 * call twice in the same JSON object.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Logger, pino as pinoFunction } from 'pino';
import { InvalidInputError } from '../../errors.js';
import { terminalLines } from '../../terminal-text.js';

export type LogFormat = 'json' | 'pretty';

/** pino's default levels and their numbers. */
const LEVEL_VALUES: Record<string, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};
export const LEVEL_NAMES = Object.keys(LEVEL_VALUES);

let root: Logger | undefined;

/** The four keys of every line; null where the line is about no such thing. */
export interface LogContext {
  /** The command (`attach`, `add-iface`, a CNI `ADD`) or the library operation the line is about. */
  operation: string | null;
  /** The sandbox id (a CNI container id); null for a command without one (scan, gc). */
  sandbox: string | null;
  /** The network namespace path; null when the line is about none (or about vcnet's own). */
  netns: string | null;
  /** The pod interface (endpoint) the line is about; null when it is about none, or several. */
  endpoint: string | null;
}

const NO_CONTEXT: LogContext = { operation: null, sandbox: null, netns: null, endpoint: null };
let boundContext: LogContext = NO_CONTEXT;

/** Sets the fields every later line carries unless it gives its own; what is left out is null. */
export function bindLogContext(context: Partial<LogContext>): void {
  boundContext = { ...NO_CONTEXT };
  for (const key of Object.keys(NO_CONTEXT) as Array<keyof LogContext>) {
    const value = context[key];
    // An empty CNI_* variable is as good as none.
    if (value !== undefined && value !== null && value !== '') boundContext[key] = value;
  }
}

/** What commander tells of the command that runs (a structural Command, so this file needs no commander). */
export interface RunningCommand {
  opts(): Record<string, unknown>;
  readonly registeredArguments: ReadonlyArray<{ name(): string }>;
  readonly processedArgs: unknown[];
}

/**
 * A CLI command's context: `operation` its name, `sandbox` its --sandbox or <sandbox> argument,
 * `netns` its --netns (gc's is a list: then each line's own, from the event). Endpoint null: a line
 * about one says which.
 */
export function commandLogContext(operation: string, command: RunningCommand): Partial<LogContext> {
  const options = command.opts();
  const named = (name: string): unknown => {
    if (options[name] !== undefined) return options[name];
    const position = command.registeredArguments.findIndex((argument) => argument.name() === name);
    return position < 0 ? undefined : command.processedArgs[position];
  };
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  return { operation, sandbox: text(named('sandbox')), netns: text(named('netns')) };
}

/** The bound context; a copy, for pino to merge a line's fields into. */
export function logContext(): LogContext {
  return { ...boundContext };
}

/** The keys a program binds for good: a library event's own (vcnet-cni's sandbox `ctr/eth0`) never replace them. */
const PROGRAM_KEYS = new Set<string>(['operation', 'sandbox']);

/**
 * A line's fields over the bound context: `netns` and `endpoint` are the line's when it gives them
 * (the namespace and interface a library event is about), `operation` and `sandbox` the program's
 * when it bound them (the command, the CNI call). A field left undefined keeps the context's value
 * (with pino's default strategy an `endpoint: undefined` would drop the key from the line).
 */
export function mergeLogContext(fields: object, context: object): object {
  const merged = context as Record<string, unknown>;
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || (PROGRAM_KEYS.has(key) && merged[key] !== null && merged[key] !== undefined)) continue;
    merged[key] = value;
  }
  return merged;
}

/** What the logger needs of pino and pino-pretty. */
interface LoggingPackages {
  pino: typeof pinoFunction;
  pretty: (options: object) => NodeJS.WritableStream;
}

/**
 * pino and pino-pretty, required synchronously at the first line (an import() would make logging
 * async). The programs carry them in one file of their own, dist/chunks/logging.cjs (made by
 * scripts/bundle-entry-points.ts), read only then: the package has no logging dependency for library
 * users to install, and a command that logs nothing never reads it. Unbundled (tests, tsc's dist/),
 * they come from node_modules, where a checkout's dev dependencies are. The path is the same from
 * every bundled file: dist/chunks/ sits as deep as dist/cli/ and dist/cni/.
 */
function loggingPackages(): LoggingPackages {
  const load = createRequire(import.meta.url);
  const bundled = new URL('../chunks/logging.cjs', import.meta.url);
  if (existsSync(bundled)) return load(fileURLToPath(bundled)) as LoggingPackages;
  const pretty = load('pino-pretty') as LoggingPackages['pretty'] | { default: LoggingPackages['pretty'] };
  return {
    pino: (load('pino') as { pino: typeof pinoFunction }).pino,
    pretty: typeof pretty === 'function' ? pretty : pretty.default,
  };
}

function loadPino(): typeof pinoFunction {
  return loggingPackages().pino;
}

/** pino-pretty as a stream written on this thread (a pino transport would load it in a worker, from its own files). */
function prettyStream(options: { destination: number; sync: boolean; colorize: boolean }): NodeJS.WritableStream {
  return loggingPackages().pretty(options);
}

function createPino(level: string, format: LogFormat): Logger {
  const pino = loadPino();
  // errWithCause: pino's default `err` serializer appends each cause's message to the error's own,
  // and vcnet's messages already carry their cause's ("open lock file X failed: EROFS: ..."), so
  // every line said it twice. This one keeps the message and gives the cause as its own object.
  const options = {
    level,
    base: null,
    serializers: { err: pino.stdSerializers.errWithCause },
    mixin: logContext,
    mixinMergeStrategy: mergeLogContext,
  };
  return format === 'pretty'
    ? pino(
        // Pretty lines go to a terminal: escape codes in a message or field (a pod link's name) are
        // shown escaped, as in the CLI's tables. JSON lines escape them by being JSON.
        { ...options, hooks: { logMethod: terminalSafeArguments } },
        quietOnFailure(
          prettyStream({
            destination: 2,
            sync: true,
            colorize: colorWanted(process.env, process.stderr.isTTY === true),
          }) as NodeJS.WritableStream & NodeJS.EventEmitter & { write: (data: string) => boolean },
        ),
      )
    : // Synchronous, as Node writes stderr to a pipe: an asynchronous destination keeps lines in a
      // buffer that pino flushes at exit with sonic-boom's flushSync, which retries a write to a
      // pipe whose reader has gone (EPIPE) forever. A synchronous write fails at once, and pino
      // then drops every later line.
      pino(options, quietOnFailure(pino.destination({ dest: 2, sync: true })));
}

/** A log call's arguments with their strings (and an object's string fields) through terminalLines. */
function terminalSafeArguments(this: Logger, args: unknown[], method: (...args: unknown[]) => void): void {
  const safe = args.map((argument) => {
    if (typeof argument === 'string') return terminalLines(argument);
    if (argument === null || typeof argument !== 'object' || argument instanceof Error) return argument;
    return Object.fromEntries(
      Object.entries(argument).map(([key, value]) => [key, typeof value === 'string' ? terminalLines(value) : value]),
    );
  });
  method.apply(this, safe);
}

/**
 * Colours only on a terminal that can show them, and never when NO_COLOR is set to anything but ""
 * (no-color.org) or TERM is dumb.
 */
export function colorWanted(env: NodeJS.ProcessEnv, isTTY: boolean): boolean {
  return isTTY && !env.NO_COLOR && env.TERM !== 'dumb';
}

/**
 * A log destination that drops its lines once a write failed (stderr on a full disk, a reader gone):
 * the lines are lost, the command goes on with its own exit status. pino drops them itself only on
 * EPIPE and rethrows anything else (ENOSPC) from the write, which would end an attach half-way.
 */
function quietOnFailure<T extends NodeJS.EventEmitter & { write: (data: string) => boolean }>(destination: T): T {
  destination.on('error', () => {
    destination.write = () => true;
  });
  return destination;
}

/**
 * A pino Logger that makes the real one on first use: `level` and `isLevelEnabled` are answered
 * without it, and a call below the level is a no-op. Anything else (a line that will be written,
 * `child`, `flush`) makes it.
 */
function deferredLogger(level: string, format: LogFormat): Logger {
  const threshold = LEVEL_VALUES[level]!;
  let real: Logger | undefined;
  const made = () => {
    real ??= createPino(level, format);
    return real;
  };
  const noop = () => undefined;
  return new Proxy({} as Logger, {
    get(_target, property) {
      // Not a thenable: returning the logger from an async function must not make pino.
      if (property === 'then') return undefined;
      if (real === undefined) {
        if (property === 'level') return level;
        if (property === 'isLevelEnabled') return (name: string) => (LEVEL_VALUES[name] ?? 0) >= threshold;
        if (property === 'silent') return noop;
        if (typeof property === 'string' && (LEVEL_VALUES[property] ?? 0) > 0) {
          if (LEVEL_VALUES[property]! < threshold) return noop;
          // Made when called, after the caller's arguments (a duration, say) have been computed.
          return (...args: unknown[]) => {
            const logger = made();
            return Reflect.apply(logger[property as 'info'], logger, args);
          };
        }
      }
      const logger = made();
      const value = Reflect.get(logger, property, logger) as unknown;
      return typeof value === 'function' ? value.bind(logger) : value;
    },
  });
}

/**
 * The process's logger, at `level` (else $VCNET_LOG_LEVEL, else warn). `levelFrom` names where a level
 * that is none came from, as the user set it (`--log-level`, or `VCNET_LOG_LEVEL` for commander's
 * default taken from it); without it, the level given is taken for the environment's when it is that.
 */
export function configureLogger(
  options: { level?: string; format?: LogFormat; levelFrom?: '--log-level' | 'VCNET_LOG_LEVEL' } = {},
): Logger {
  const format = options.format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  if (format !== 'json' && format !== 'pretty') throw new InvalidInputError('--log-format', format, 'json, pretty');
  const given = options.level ?? process.env.VCNET_LOG_LEVEL ?? 'warn';
  // Level names are taken in any case (`Info`, as some runtimes' configs spell them).
  const level = given.toLowerCase();
  if (!LEVEL_NAMES.includes(level)) {
    const from =
      options.levelFrom ??
      (options.level === undefined || options.level === process.env.VCNET_LOG_LEVEL
        ? 'VCNET_LOG_LEVEL'
        : '--log-level');
    throw new InvalidInputError(from, given, LEVEL_NAMES.join(', '));
  }
  root = deferredLogger(level, format);
  return root;
}

/** The process's logger: what configureLogger made, else a silent one (VCNET_LOG_LEVEL can raise it). */
export function logger(): Logger {
  return root ?? configureLogger({ format: 'json', level: logLevelFrom(process.env) ?? 'silent' });
}

/** VCNET_LOG_LEVEL as a level name, or undefined when unset or not a level (what to say is the caller's). */
export function logLevelFrom(env: NodeJS.ProcessEnv): string | undefined {
  const level = env.VCNET_LOG_LEVEL?.toLowerCase();
  return level !== undefined && LEVEL_NAMES.includes(level) ? level : undefined;
}
