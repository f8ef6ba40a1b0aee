/**
 * Every error vcnet raises is a VcnetError: a stable `code` from the registry (error-codes.ts) programs
 * can switch on, the offending `value`, and a `hint` that tells a person what to do about it.
 *
 * `instanceof` works across two copies of vcnet in one process (a library and a plugin each bundling
 * their own): every instance carries the brand `Symbol.for('vcnet.error')` and one
 * `Symbol.for('vcnet.error.<errorName>')` per vcnet class it derives from, and `static [Symbol.hasInstance]`
 * checks those besides the prototype chain. Across versions, match on `error.code`.
 *
 * Each class states its `errorName` rather than using the class's runtime name: bundlers rename
 * classes (esbuild emits `class _InvalidInputError`), which would change `error.name` and the brands.
 * A caller's own subclass that states no `errorName` gets no brand of its own, so a class of theirs
 * that happens to be called AttachError is not mistaken for vcnet's.
 *
 * classifyError is the one place that decides what a failure becomes outside vcnet: the CLI's exit
 * status, the CNI error code and the agent's status all come from it, so an EPERM wrapped in an attach
 * error is "not permitted" everywhere.
 */

import { existsSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { inspect } from 'node:util';
import {
  type AgentOutcome,
  type CniOutcome,
  ErrnoOutcomes,
  type ErrorCode,
  ErrorCodes,
  type ExitOutcome,
  isErrorCode,
} from './error-codes.js';
import { shellWord } from './shell-word.js';

export type { AgentOutcome, CniOutcome, ExitOutcome } from './error-codes.js';
export { type ErrorCode, type ErrorCodeInfo, ErrorCodes, isErrorCode } from './error-codes.js';

const VCNET_ERROR_BRAND = Symbol.for('vcnet.error');
const classBrand = (className: string): symbol => Symbol.for(`vcnet.error.${className}`);

function hasBrand(instance: unknown, brand: symbol): boolean {
  return typeof instance === 'object' && instance !== null && (instance as Record<symbol, unknown>)[brand] === true;
}

/** The `errorName` a class states itself; undefined for a subclass that only inherits one. */
function ownErrorName(type: unknown): string | undefined {
  if (typeof type !== 'function' || !Object.hasOwn(type, 'errorName')) return undefined;
  const name = (type as { errorName?: unknown }).errorName;
  return typeof name === 'string' ? name : undefined;
}

/** An instance of `type` (VcnetError or a subclass), from this copy of vcnet or another one. */
function isBrandedInstance(type: abstract new (...args: never[]) => unknown, instance: unknown): boolean {
  const name = ownErrorName(type);
  const brand =
    (type as unknown) === VcnetError ? VCNET_ERROR_BRAND : name === undefined ? undefined : classBrand(name);
  return (
    (brand !== undefined && hasBrand(instance, brand)) || Function.prototype[Symbol.hasInstance].call(type, instance)
  );
}

/** What a VcnetError carries besides its code and message. */
export interface VcnetErrorOptions {
  value?: unknown;
  hint?: string | undefined;
  cause?: unknown;
}

/**
 * The base of every error vcnet throws: a stable `code` from the registry (ErrorCodes, and
 * docs/troubleshooting.md), the offending `value` and a `hint` saying what to do. `instanceof` works
 * across two copies of vcnet (a brand, not the class's identity); classifyError maps it to the CLI's
 * exit, the CNI error code and the agent's status.
 */
export class VcnetError extends Error {
  /**
   * The class's stable name: `error.name` and the key of its brand. Each vcnet class states its own;
   * a subclass outside vcnet may state one too (it is then recognised across copies by that name).
   */
  static readonly errorName: string = 'VcnetError';

  readonly code: ErrorCode;
  readonly value: unknown;
  readonly hint: string | undefined;

  /** True for an error of this class (or a subclass) from any copy of vcnet. */
  static override [Symbol.hasInstance]<T>(
    this: abstract new (
      ...args: never[]
    ) => T,
    instance: unknown,
  ): instance is T {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof asks about, a subclass too
    return isBrandedInstance(this, instance);
  }

  constructor(code: ErrorCode, message: string, options: VcnetErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    // A caller's subclass without an errorName of its own keeps its own class name.
    this.name = ownErrorName(new.target) ?? new.target.name;
    this.code = code;
    this.value = options.value;
    this.hint = options.hint;
    // Brands are non-enumerable so they stay out of JSON, logs and deep-equality checks.
    Object.defineProperty(this, VCNET_ERROR_BRAND, { value: true });
    for (let type: unknown = new.target; type !== Error && typeof type === 'function'; ) {
      const name = ownErrorName(type);
      if (name !== undefined && name !== 'VcnetError') {
        Object.defineProperty(this, classBrand(name), { value: true });
      }
      type = Object.getPrototypeOf(type);
    }
  }

  /** A JSON-friendly view for `--json` output and logs. */
  toJSON(): Record<string, unknown> {
    const errno = (this as { errno?: unknown }).errno;
    return {
      name: this.name,
      code: this.code,
      ...(typeof errno === 'string' ? { errno } : {}),
      message: this.message,
      value: this.value,
      hint: this.hint,
    };
  }
}

/**
 * A value shown as its source wrote it where JavaScript would not: a TOML `nan`, `inf`, or an integer
 * beyond 2^53 (a bigint, which JSON output cannot hold). JSON gives the text.
 */
export class WrittenAs {
  constructor(readonly text: string) {}
  toJSON(): string {
    return this.text;
  }
}

/**
 * A refused value as the caller wrote it. JSON.stringify alone shows NaN and Infinity as null, -0
 * as 0, a function or a symbol as undefined, and throws on a bigint or a cycle.
 */
export function describeGivenValue(value: unknown): string {
  const text = givenValueText(value);
  return text.length <= GIVEN_VALUE_SHOWN_MAX
    ? text
    : `${text.slice(0, GIVEN_VALUE_SHOWN_MAX)}… (${text.length} characters in all)`;
}

/**
 * Why JSON.parse refused `text`, in words a terminal shows: JSON.parse names a leading byte order
 * mark by the character itself (`Unexpected token '\uFEFF'` printed invisibly). `bomRemedy` follows
 * the byte-order-mark words where the caller has one to give.
 */
export function jsonParseProblem(text: string, error: unknown, bomRemedy?: string): string {
  if (!text.startsWith('\uFEFF')) return (error as Error).message;
  const words = 'it starts with a byte order mark (U+FEFF), which JSON does not allow';
  return bomRemedy === undefined ? words : `${words}: ${bomRemedy}`;
}

/**
 * How much of a refused value a message quotes: a runtime logs each error (vcnet-cni's twice, in
 * `msg` and `details`), and a 100,000-character field made a 200 KB answer. The error's `value`
 * keeps it whole.
 */
const GIVEN_VALUE_SHOWN_MAX = 200;

function givenValueText(value: unknown): string {
  // An undefined value is a field nobody gave.
  if (value === undefined) return 'not given';
  if (value instanceof WrittenAs) return value.text;
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'symbol') return value.toString();
  if (typeof value === 'function') return value.name ? `a function (${value.name})` : 'a function';
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {
    // a cycle or a bigint inside: said the way Node prints it
  }
  return inspect(value, { depth: 2, breakLength: Number.POSITIVE_INFINITY });
}

/** Bad input from a user or a caller: names the field, the value and what is accepted. */
export class InvalidInputError extends VcnetError {
  static override readonly errorName: string = 'InvalidInputError';
  readonly field: string;
  readonly accepted: string;
  /** The hint given, when it is not the default one ("set FIELD to ACCEPTED"). */
  private readonly givenHint: string | undefined;
  constructor(field: string, value: unknown, accepted: string, hint?: string) {
    const given = describeGivenValue(value);
    super('VCNET_INVALID_INPUT', `invalid ${field}: ${given} (accepted: ${accepted})`, {
      value,
      hint: hint ?? `set ${field} to ${accepted}`,
    });
    this.field = field;
    this.accepted = accepted;
    this.givenHint = hint;
  }

  /**
   * The same refusal under another name for the field (a library field as the CLI flag that sets it);
   * `hint`, when given, replaces one that speaks in the library's words.
   */
  underField(field: string, hint?: string): InvalidInputError {
    return new InvalidInputError(field, this.value, this.accepted, hint ?? this.givenHint);
  }
}

/** One refused field of a larger input: its path, the value given and what it accepts. */
export interface FieldIssue {
  field: string;
  value: unknown;
  accepted: string;
}

/**
 * Several fields of one input refused at once, so a caller fixes them in one go: the message and
 * `field` name the first, the message lists the others, and `issues` holds them all.
 */
export class InvalidFieldsError extends InvalidInputError {
  static override readonly errorName: string = 'InvalidFieldsError';
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[], hint?: string) {
    const first = issues[0] ?? { field: '(input)', value: undefined, accepted: 'a valid input' };
    super(first.field, first.value, first.accepted, hint);
    this.issues = issues;
    if (issues.length > 1) {
      this.message += ` and ${issues.length - 1} more: ${issues
        .slice(1)
        .map((issue) => `${issue.field}=${describeGivenValue(issue.value)} (accepted: ${issue.accepted})`)
        .join('; ')}`;
    }
  }
}

const ACCEPTED_NAMESPACE = 'the path of a network namespace, such as /var/run/netns/NAME or /proc/PID/ns/net';

/** NamespacePathError's `what` for a file's path with a "/" after it (/var/run/netns/pod/). */
export const NAMED_WITH_TRAILING_SLASH = 'named with a trailing "/"';

/** What is wrong with the path, said plainly: "no such file", "a FIFO, not a network namespace". */
function problemOf(what: string, path: string): string {
  if (what === NAMED_WITH_TRAILING_SLASH)
    return `${path.replace(/\/+$/, '')} is a file, not a directory, so the path with a "/" after it names nothing: leave out the trailing "/"`;
  if (what === 'missing') return 'no such file';
  if (what === 'missing, and no record names it') return 'no such file, and no vcnet record names it';
  if (what === 'empty') return 'empty';
  return `${what}, not a network namespace`;
}

/** Where `ip netns add NAME` puts NAME's file (the netns layer's NETNS_RUN_DIRECTORY, which sits above this one). */
const IP_NETNS_DIRECTORY = '/var/run/netns';

/**
 * The hint for an `ip netns` name given where a path goes (`--netns pod`): read against the working
 * directory it names nothing, though /var/run/netns/pod is there. Undefined for anything else.
 */
function namedNamespaceMeant(what: string, path: string): string | undefined {
  if (!what.startsWith('missing') || path.includes('/') || path === '.' || path === '..') return undefined;
  const named = `${IP_NETNS_DIRECTORY}/${path}`;
  if (!existsSync(named)) return undefined;
  return `did you mean ${named}? A namespace's name from \`ip netns\` is not a path: give its file`;
}

/**
 * The hint for an `ip netns` name given where a library caller's namespace path goes (NetworkConfig's
 * `namespacePath: 'pod'`), as the CLI's --netns gets it: undefined unless /var/run/netns/NAME is there.
 */
export function namespaceNameGivenAsPath(path: string): string | undefined {
  const named = namedNamespaceMeant('missing', path);
  if (named !== undefined || path === '' || isAbsolute(path)) return named;
  // A relative path that names a file from here (`--netns ./pod` in /var/run/netns): the record
  // keeps the path for later commands run anywhere, so it must be absolute; say which one it is.
  const absolute = resolve(path);
  if (!existsSync(absolute)) return undefined;
  return `give its absolute path, ${absolute}: the record keeps the path, and the sandbox's later commands (detach, gc) read it from any directory`;
}

/** The path does not name a network namespace (a FIFO, a file, a directory, another namespace type...). */
export class NamespacePathError extends VcnetError {
  static override readonly errorName: string = 'NamespacePathError';
  constructor(
    /** The option or argument that gave the path (`--netns`, `namespacePath`, `CNI_NETNS`...). */
    readonly field: string,
    path: string,
    /** What the path is instead ("missing", "a FIFO", "a regular file", "a mnt namespace"...). */
    readonly what: string,
  ) {
    const problem = problemOf(what, path);
    super('VCNET_NETNS_INVALID', `${field} ${JSON.stringify(path)}: ${problem} (accepted: ${ACCEPTED_NAMESPACE})`, {
      value: path,
      hint:
        namedNamespaceMeant(what, path) ??
        'give a network namespace path such as /var/run/netns/NAME or /proc/PID/ns/net',
    });
    this.problem = problem;
  }

  /** What is wrong with the path, as the message says it ("no such file", "a FIFO, not a network namespace"). */
  readonly problem: string;
}

/** A system call made by the native shim failed. */
export class SystemCallError extends VcnetError {
  static override readonly errorName: string = 'SystemCallError';
  readonly errno: string;
  readonly syscall: string;
  constructor(operation: string, cause: NodeJS.ErrnoException & { detail?: string }, hint?: string) {
    const errno = systemErrorName(cause);
    super('VCNET_SYSCALL', `${operation} failed: ${cause.message}`, {
      value: cause.detail,
      // A file system call refused names its path (Node's errors carry it): file or ptrace
      // permission, not a namespace vcnet may not enter.
      hint: hint ?? hintForErrno(errno, typeof cause.path === 'string' ? cause.path : undefined),
      cause,
    });
    this.errno = errno;
    this.syscall = cause.syscall ?? operation;
  }
}

/** Where two names share a number, the one the kernel's headers and strerror use. */
const PREFERRED_ERRNO_NAMES: ReadonlySet<string> = new Set(['EAGAIN', 'EOPNOTSUPP']);

const ERRNO_NAMES_BY_NUMBER = new Map<number, string>();
for (const [name, number] of Object.entries(osConstants.errno)) {
  if (!ERRNO_NAMES_BY_NUMBER.has(number) || PREFERRED_ERRNO_NAMES.has(name)) ERRNO_NAMES_BY_NUMBER.set(number, name);
}

/** The name of a (positive) errno number, `E<number>` for one this platform does not name. */
export function errnoNameOfNumber(errno: number): string {
  return ERRNO_NAMES_BY_NUMBER.get(errno) ?? `E${errno}`;
}

/**
 * The errno name of a system error: its `code` when that is one, else the name of its numeric `errno`
 * (the native shim names only the errnos it expects and sends the others as `EUNKNOWN` with the number).
 */
function systemErrorName(cause: NodeJS.ErrnoException): string {
  if (typeof cause.code === 'string' && Object.hasOwn(osConstants.errno, cause.code)) return cause.code;
  const named = typeof cause.errno === 'number' ? ERRNO_NAMES_BY_NUMBER.get(Math.abs(cause.errno)) : undefined;
  return named ?? String(cause.code ?? 'EUNKNOWN');
}

/** The capabilities vcnet needs, by their bit in /proc/PID/status's CapEff (linux/capability.h). */
const NEEDED_CAPABILITIES = [
  ['CAP_NET_ADMIN', 12n],
  ['CAP_SYS_ADMIN', 21n],
] as const;

/** Capabilities that let a process past file and ptrace permission, by their bit in CapEff. */
const FILE_CAPABILITIES = [
  ['CAP_DAC_OVERRIDE', 1n],
  ['CAP_DAC_READ_SEARCH', 2n],
  ['CAP_SYS_PTRACE', 19n],
] as const;

/**
 * The capabilities vcnet needs that this process does not have in effect (CapEff of
 * /proc/self/status); undefined when that cannot be read (not Linux, no /proc). `among`: which to
 * look at (default: CAP_NET_ADMIN and CAP_SYS_ADMIN).
 */
export function missingCapabilities(
  status?: string,
  among: ReadonlyArray<readonly [string, bigint]> = NEEDED_CAPABILITIES,
): string[] | undefined {
  let text = status;
  try {
    text ??= readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
  const effective = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(text)?.[1];
  if (effective === undefined) return undefined;
  const bits = BigInt(`0x${effective}`);
  return among.filter(([, bit]) => ((bits >> bit) & 1n) === 0n).map(([name]) => name);
}

/** Another process's /proc/PID/... (not this one's: /proc/self, /proc/thread-self, its own pid). */
function otherProcessPath(path: string): boolean {
  const pid = /^\/proc\/(\d+)(?:\/|$)/.exec(path)?.[1];
  return pid !== undefined && Number(pid) !== process.pid;
}

/**
 * The hint for EACCES/EPERM on a file: a path another user's process keeps (/proc/PID/...) needs
 * CAP_SYS_PTRACE; one whose file or directories this process may not read or search needs
 * CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE. undefined when this process has what that takes (then
 * it is a user namespace or a security module: permissionHint says so).
 */
export function pathPermissionHint(path: string, status?: string): string | undefined {
  const missing = missingCapabilities(status, FILE_CAPABILITIES);
  if (missing === undefined) return undefined;
  if (otherProcessPath(path)) {
    if (!missing.includes('CAP_SYS_PTRACE')) return undefined;
    return `${path} belongs to another process, which this process may look into only with CAP_SYS_PTRACE (or as that process's user, with no fewer capabilities than it), and this process lacks CAP_SYS_PTRACE (CapEff in /proc/self/status): give it CAP_SYS_PTRACE, or name the namespace by a path that pins it (/var/run/netns/NAME, \`ip netns attach NAME PID\`)`;
  }
  if (!missing.includes('CAP_DAC_OVERRIDE') || !missing.includes('CAP_DAC_READ_SEARCH')) return undefined;
  return `${path}, or a directory on the way to it, is not open to this process by its owner and mode, and this process lacks CAP_DAC_READ_SEARCH and CAP_DAC_OVERRIDE (CapEff in /proc/self/status), which let root past them: give it CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE), or use a path it may read`;
}

function permissionHint(): string {
  const missing = missingCapabilities();
  const root = process.geteuid?.() === 0;
  // Named, so a service manager's unit (AmbientCapabilities=, CapabilityBoundingSet=) or a
  // container's cap_add can be fixed directly: "run it as root" is no help to a root without them.
  const lacking =
    missing !== undefined && missing.length > 0
      ? `this process lacks ${missing.join(' and ')} (CapEff in /proc/self/status)`
      : undefined;
  if (!root)
    return `vcnet changes network namespaces and devices: run it as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN in effect${lacking ? ` (${lacking})` : ''}`;
  if (lacking)
    return `vcnet runs as root but ${lacking}: give it CAP_NET_ADMIN and CAP_SYS_ADMIN (a service's CapabilityBoundingSet= and AmbientCapabilities=, a container's cap_add)`;
  // Root with both capabilities refused anyway: confined some other way.
  return 'vcnet runs as root and was still refused: the namespace belongs to another user namespace, or a security module (AppArmor, SELinux) denies it; run vcnet where root may enter that namespace';
}

/**
 * The hint of the first error in `cause`'s chain that has one, else what its errno suggests: for a
 * wrapper (an attach that failed) whose cause is a bare system error.
 */
export function hintFromCause(cause: unknown): string | undefined {
  const chain = causeChain(cause);
  for (const link of chain) {
    const hint = (link as { hint?: unknown } | null)?.hint;
    if (typeof hint === 'string' && hint !== '') return hint;
  }
  for (const link of chain) {
    const errno = errnoOf(link);
    const hint = errno === undefined ? undefined : hintForErrno(errno);
    if (hint !== undefined) return hint;
  }
  return undefined;
}

/** What an errno suggests; `path`: the file a refused (EACCES, EPERM) file system call named. */
export function hintForErrno(errno: string, path?: string): string | undefined {
  switch (errno) {
    case 'EPERM':
    case 'EACCES':
      return (path === undefined ? undefined : pathPermissionHint(path)) ?? permissionHint();
    case 'ENOENT':
      return 'the namespace, device or file does not exist: check the path (ip netns list shows named namespaces)';
    case 'EEXIST':
      return 'an object of that name already exists: pick another name or remove the old one first';
    case 'EROFS':
      return 'the file system is read-only: pick a writable directory (--state-dir, or VCNET_STATE_DIR)';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'the file system is full: free space there (df), then run the command again';
    case 'EBUSY':
      return 'the object is in use (a running VM holds the tap?): stop its user first';
    case 'EOPNOTSUPP':
      return 'this kernel does not support the operation (a missing module or device type)';
    case 'EMFILE':
      return "this process has as many files open as its limit allows: raise it (ulimit -n in the shell that runs vcnet, LimitNOFILE= in a systemd unit, or the runtime's rlimit), then run the command again";
    case 'ENFILE':
      return 'the system has as many files open as it allows (fs.file-max): close some, or raise the limit (sysctl fs.file-max), then run the command again';
    default:
      return undefined;
  }
}

/** Where a relative path was read from; a deleted working directory has no name (uv_cwd fails). */
function relativeTo(): string {
  try {
    return ` (read from the current directory, ${process.cwd()})`;
  } catch {
    return ' (read from the current directory, which was deleted: give an absolute path)';
  }
}

/**
 * What to do about an input file that could not be read (`--config`, add-iface's FILE...), by the
 * errno of the failed open or read: the bare Node message ("ENOENT: no such file or directory, open
 * ...") says what failed but not what to do. `otherwise`, when given, is the other way in (", or
 * give - and pipe it to standard input").
 */
export function unreadableFileHint(error: unknown, path: string, otherwise = ''): string {
  const errno = errnoOf(error);
  switch (errno) {
    case 'ENOENT':
      return `ENOENT: ${path} does not exist: check the path${isAbsolute(path) ? '' : relativeTo()}${otherwise}`;
    case 'ENOTDIR':
      return `ENOTDIR: a part of ${path} before its last is a file, not a directory: check the path${otherwise}`;
    case 'EISDIR':
      return `EISDIR: ${path} is a directory: give the file in it${otherwise}`;
    case 'ELOOP':
      return `ELOOP: ${path} is a loop of symbolic links: give the file itself${otherwise}`;
    case 'EACCES':
    case 'EPERM':
      return `${errno}: ${pathPermissionHint(path) ?? `${path} is not open to this process: read it as a user who may (\`ls -l ${shellWord(path)}\`)`}${otherwise}`;
    default:
      if (errno === undefined)
        return `${error instanceof Error ? error.message : String(error)}: check ${path}${otherwise}`;
      return `${errno}: ${hintForErrno(errno, path) ?? `${path} could not be read: check the file`}${otherwise}`;
  }
}

/**
 * errnos of a refusal the same request may not meet again shortly: the kernel busy or out of memory
 * or buffers for now, a call interrupted or timed out, a dump the kernel changed under (EINTR), an
 * object of that name made by someone else between a read and the change (EEXIST: the next read
 * says whose it is). Others (EINVAL, EOPNOTSUPP, ENOENT, ENODEV, EPERM, ...) say what the request
 * is, or what the kernel is: sent again, they get the same answer.
 */
const TRANSIENT_ERRNOS: ReadonlySet<string> = new Set([
  'EAGAIN',
  'EWOULDBLOCK',
  'EBUSY',
  'ENOBUFS',
  'ENOMEM',
  'EINTR',
  'ETIMEDOUT',
  'EEXIST',
]);

/**
 * Whether a failure may go away by itself if the same thing is tried again (a timer's retry): the
 * first errno in its cause chain (errnoOf) is one of TRANSIENT_ERRNOS. A failure with no errno in its
 * chain (no answer, a bug) is taken as transient: a bounded retry costs little and may tell more.
 */
export function isTransientFailure(error: unknown): boolean {
  for (const link of causeChain(error)) {
    const errno = errnoOf(link);
    if (errno !== undefined) return TRANSIENT_ERRNOS.has(errno);
  }
  return true;
}

/** What a failure becomes outside vcnet, and which error in its cause chain decided that. */
export interface ErrorClassification {
  /** The registry code of the deciding error (VCNET_ERROR when it is not a VcnetError). */
  readonly code: ErrorCode;
  /** The errno name when an errno decided (EPERM, EACCES). */
  readonly errno: string | undefined;
  /** The error in the cause chain that decided. */
  readonly decidedBy: unknown;
  readonly exit: ExitOutcome;
  readonly cni: CniOutcome;
  readonly agent: AgentOutcome;
}

const MAX_CAUSE_DEPTH = 32;

/** The error, its cause, the cause's cause...: outermost first; stops at a cycle. */
export function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let current = error; current !== undefined && current !== null && chain.length < MAX_CAUSE_DEPTH; ) {
    if (chain.includes(current)) break;
    chain.push(current);
    current = typeof current === 'object' ? (current as { cause?: unknown }).cause : undefined;
  }
  return chain;
}

const ERRNO_NAME = /^E[A-Z0-9]+$/;

/**
 * The errno name a failure carries: an `errno` field holding the name (NetlinkError, SystemCallError),
 * or the `code` of a Node system error and of the native shim's raw errors (which have a numeric errno).
 */
export function errnoOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { errno, code, syscall } = error as { errno?: unknown; code?: unknown; syscall?: unknown };
  if (typeof errno === 'string') return ERRNO_NAME.test(errno) ? errno : undefined;
  if (error instanceof VcnetError) return undefined;
  const isSystemError = typeof errno === 'number' || typeof syscall === 'string';
  return isSystemError && typeof code === 'string' && ERRNO_NAME.test(code) ? code : undefined;
}

const UNKNOWN_VCNET_FAILURE = { exit: 'FAILED', cni: 'VCNET_FAILED', agent: 'INTERNAL' } as const;

function registryCodeOf(error: unknown): ErrorCode | undefined {
  if (!(error instanceof VcnetError)) return undefined;
  // A VcnetError from another version may carry a code this one does not know: a general failure.
  return isErrorCode(error.code) ? error.code : undefined;
}

/**
 * Codes that say objects were left behind: one decides over an errno in its cause, which is only why
 * the operation failed (an attach refused with EPERM whose undo was refused too must still say that
 * something is left, and which command finishes it).
 */
const LEFT_BEHIND_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['VCNET_ROLLBACK_INCOMPLETE']);

/**
 * The kernel's own words when it answers EACCES for a state of the device, not a privilege: IPv6 is
 * turned off on the link (addrconf refuses an address there with "IPv6 is disabled on this device").
 */
export const NOT_A_PERMISSION_KERNEL_MESSAGE = /IPv6 is disabled/i;

/** An EPERM/EACCES whose kernel message says why, and it is not a missing privilege. */
function refusedForDeviceState(link: unknown): boolean {
  const kernelMessage = (link as { kernelMessage?: unknown } | null)?.kernelMessage;
  return typeof kernelMessage === 'string' && NOT_A_PERMISSION_KERNEL_MESSAGE.test(kernelMessage);
}

/**
 * The one classifier. Walking the cause chain from the outside in:
 * 1. an error saying objects were left behind (VCNET_ROLLBACK_INCOMPLETE) or an errno listed in
 *    ErrnoOutcomes (EPERM, EACCES), whichever comes first, decides;
 * 2. else the outermost error whose code is `specific` (bad input, locked, unsupported interface...);
 * 3. else the outermost VcnetError (a wrapper such as VCNET_ATTACH_FAILED, or a family such as
 *    VCNET_NETLINK);
 * 4. else it is not vcnet's own: VCNET_ERROR.
 */
export function classifyError(error: unknown): ErrorClassification {
  const chain = causeChain(error);
  for (const link of chain) {
    const code = registryCodeOf(link);
    if (code !== undefined && LEFT_BEHIND_CODES.has(code)) return outcomeOf(code, link);
    const errno = errnoOf(link);
    if (errno !== undefined && Object.hasOwn(ErrnoOutcomes, errno) && !refusedForDeviceState(link)) {
      const outcome = ErrnoOutcomes[errno as keyof typeof ErrnoOutcomes];
      return { code: registryCodeOf(link) ?? 'VCNET_ERROR', errno, decidedBy: link, ...outcome };
    }
  }
  const specific = chain.find((link) => {
    const code = registryCodeOf(link);
    return code !== undefined && ErrorCodes[code].role === 'specific';
  });
  const deciding = specific ?? chain.find((link) => link instanceof VcnetError);
  if (deciding === undefined) return outcomeOf('VCNET_ERROR', error);
  const code = registryCodeOf(deciding);
  if (code === undefined) {
    return { code: 'VCNET_ERROR', errno: errnoOf(deciding), decidedBy: deciding, ...UNKNOWN_VCNET_FAILURE };
  }
  return outcomeOf(code, deciding);
}

function outcomeOf(code: ErrorCode, decidedBy: unknown): ErrorClassification {
  const { exit, cni, agent } = ErrorCodes[code];
  return { code, errno: errnoOf(decidedBy), decidedBy, exit, cni, agent: relayedAgentStatus(code, decidedBy) ?? agent };
}

/** The google.rpc statuses an agent call failure keeps as its outcome (the others are INTERNAL). */
const RELAYED_AGENT_STATUSES: ReadonlySet<string> = new Set<AgentOutcome>([
  'CANCELLED',
  'RESOURCE_EXHAUSTED',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'UNIMPLEMENTED',
  'UNAVAILABLE',
]);

/**
 * An agent call that failed with a status (a deadline, a cancel, the agent's NOT_FOUND) is that
 * status, not a general INTERNAL: the one code VCNET_AGENT_STATUS covers them all, and the status
 * is on the error (AgentStatusError.statusName).
 */
function relayedAgentStatus(code: ErrorCode, decidedBy: unknown): AgentOutcome | undefined {
  if (code !== 'VCNET_AGENT_STATUS') return undefined;
  const name = (decidedBy as { statusName?: unknown }).statusName;
  return typeof name === 'string' && RELAYED_AGENT_STATUSES.has(name) ? (name as AgentOutcome) : undefined;
}

/**
 * An attach failed and undoing it was refused too: `left` names what is still there, and the
 * record keeps exactly that for `vcnet detach` or `vcnet gc`. Its hint says both what finishes what
 * is left and, after "the cause:", what to do about the failure itself (`causeHint`: the attach's
 * own hint, such as the remedy for another tool's shared filter block), which the user must fix first.
 */
export class RollbackIncompleteError extends VcnetError {
  static override readonly errorName: string = 'RollbackIncompleteError';
  readonly left: unknown[];
  readonly failures: readonly string[];
  /** What finishes what is left (the hint without the cause's part): what `retold` replaces. */
  readonly leftHint: string;
  /** What to do about the failure that started the undo; by default the hint its cause carries. */
  readonly causeHint: string | undefined;
  /** What failed ("attach", "ADD of eth0"), as the message says it. */
  readonly operation: string;
  constructor(
    what: string,
    cause: Error,
    failures: readonly string[],
    leftObjects: readonly string[],
    left: unknown[],
    hint = 'the sandbox record keeps what is left: run `vcnet detach` (or `vcnet gc`) once the cause is fixed',
    /** What the undo was of, when not only the failed operation itself (endpoints attached before it). */
    readonly undone = 'it',
    /**
     * Objects whose state is not known (the kernel's answer to their undo was lost and no look could
     * be made): maybe gone, kept in the record with `left`; `leftObjects` are those seen there.
     */
    readonly notChecked: readonly string[] = [],
    causeHint: string | undefined = causeHintOf(cause),
    /**
     * What the undo left in place on purpose, each with why ("the ingress qdisc on eth0, which stays: it
     * holds …"): another tool's from then on, in no record (not `left`: neither detach nor gc takes it).
     */
    readonly handedOver: readonly string[] = [],
  ) {
    super(
      'VCNET_ROLLBACK_INCOMPLETE',
      `${what} failed: ${cause.message}; undoing ${undone} failed too (${failures.join('; ')}): ${leftAndNotChecked(leftObjects, notChecked)}${handedOverSaid(handedOver)}`,
      { value: leftObjects, hint: causeHint === undefined ? hint : `${hint}; the cause: ${causeHint}`, cause },
    );
    this.left = left;
    this.failures = failures;
    this.operation = what;
    this.leftHint = hint;
    this.causeHint = causeHint;
  }

  override toJSON(): Record<string, unknown> {
    return {
      ...super.toJSON(),
      ...(this.notChecked.length > 0 ? { notChecked: this.notChecked } : {}),
      ...(this.handedOver.length > 0 ? { handedOver: this.handedOver } : {}),
    };
  }

  /**
   * The same failure told for the command that ran (CNI ADD, add-iface): its name, and the command
   * that finishes what is left there (`vcnet detach` would find no sandbox, or take a live one down).
   * What to do about the cause stays.
   */
  retold(what: string, hint: string, causeHint = this.causeHint): RollbackIncompleteError {
    return new RollbackIncompleteError(
      what,
      this.cause as Error,
      this.failures,
      this.value as string[],
      this.left,
      hint,
      this.undone,
      this.notChecked,
      causeHint,
      this.handedOver,
    );
  }

  /** The same failure, with what to do about its cause said by one who knows better (an endpoint's type). */
  withCauseHint(causeHint: string): RollbackIncompleteError {
    return this.retold(this.operation, this.leftHint, causeHint);
  }
}

/** The hint of a failure that started an undo: a refused rollback's own cause hint, else the chain's. */
function causeHintOf(cause: Error): string | undefined {
  return cause instanceof RollbackIncompleteError ? cause.causeHint : hintFromCause(cause);
}

/**
 * What an undo left, as its error says it: the objects seen still there, and apart the ones whose
 * state is not known (their answers lost, no look made), which the record keeps as well.
 */
function leftAndNotChecked(leftObjects: readonly string[], notChecked: readonly string[]): string {
  const parts = [
    ...(leftObjects.length > 0 ? [`left ${leftObjects.join(', ')}`] : []),
    ...(notChecked.length > 0
      ? [
          `not checked (the kernel's answers were lost and no look could be made: maybe gone, kept in the record) ${notChecked.join(', ')}`,
        ]
      : []),
  ];
  return parts.join('; ');
}

/**
 * What an undo handed over, apart from what it left: another tool's now, so no record keeps it for
 * detach or gc, which the user must know as well as what is left.
 */
function handedOverSaid(handedOver: readonly string[]): string {
  if (handedOver.length === 0) return '';
  return `; handed over, not left: ${handedOver.join(', and ')} (${handedOverFate(handedOver)})`;
}

/**
 * What becomes of objects a rollback handed over, said after naming them, by RollbackIncompleteError
 * and AttachError alike: vcnet's filters in them went, and nothing of vcnet's will touch them again.
 */
export function handedOverFate(handedOver: readonly string[]): string {
  const them = handedOver.length > 1 ? 'them' : 'it';
  return `vcnet's own filters in ${them} were deleted and no record keeps ${them}, as ${handedOver.length > 1 ? 'they are' : 'it is'} that tool's now: neither detach nor gc will delete ${them}`;
}

/** What finishes an incomplete detach (DetachIncompleteError's hint). */
export interface DetachFinishedBy {
  /** The hint's advice when nothing but the refusal stood in the way ("run the command again ..."). */
  again: string;
  /** What the record is kept for when a privilege was missing ("the same command run again"). */
  next: string;
}

const DETACH_AGAIN: DetachFinishedBy = {
  again: 'run the command again (what is already gone is skipped)',
  next: 'the same command run again',
};

/**
 * A detach (or DEL, del-iface) whose undo the kernel refused in part: the record keeps what is left.
 * `refusals` are the errors behind `failures`: the one that decides how the failure is classified
 * becomes the cause, so a detach refused with EPERM is "not permitted" like any other refusal.
 */
export class DetachIncompleteError extends VcnetError {
  static override readonly errorName: string = 'DetachIncompleteError';
  constructor(
    what: string,
    /** Why each part was refused, as the message says it. */
    readonly failures: readonly string[],
    /** What is left in place, as the message names it. */
    readonly leftObjects: readonly string[],
    recordPath: string,
    hint?: string,
    refusals: readonly unknown[] = [],
    /**
     * What finishes it once the cause is fixed: `again` as the hint says it, `next` as what the
     * record is kept for. Not `vcnet gc`: gc leaves a live sandbox's record, and what it lists,
     * alone (it finishes only attaches and add-ifaces killed part-way).
     */
    finishedBy: DetachFinishedBy = DETACH_AGAIN,
    /**
     * Objects whose state is not known (the kernel's answer to their undo was lost and no look could
     * be made): maybe gone, kept in the record with `leftObjects`, which are those seen there.
     */
    readonly notChecked: readonly string[] = [],
  ) {
    const refusedForPrivilege = refusals.find((refusal) => {
      const errno = errnoOf(refusal);
      return errno !== undefined && Object.hasOwn(ErrnoOutcomes, errno) && !refusedForDeviceState(refusal);
    });
    const cause = refusedForPrivilege ?? refusals[0];
    super(
      'VCNET_DETACH_INCOMPLETE',
      `${what} left ${leftObjects.length} object(s) in place${leftObjects.length > 0 ? `: ${leftObjects.join(', ')}` : ''}${notChecked.length > 0 ? `; ${leftAndNotChecked([], notChecked)}` : ''} (${failures.join('; ')})`,
      {
        value: leftObjects,
        // Running it again cannot help while the privilege is missing.
        hint:
          hint ??
          (refusedForPrivilege === undefined
            ? `${recordPath} keeps them: ${finishedBy.again}`
            : `${hintForErrno(errnoOf(refusedForPrivilege)!)}; ${recordPath} keeps what is left for ${finishedBy.next} with that privilege`),
        ...(cause === undefined ? {} : { cause }),
      },
    );
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), ...(this.notChecked.length > 0 ? { notChecked: this.notChecked } : {}) };
  }
}
