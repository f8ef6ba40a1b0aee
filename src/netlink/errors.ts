/**
 * Errors of the netlink layer. Every refusal by the kernel is one family, VCNET_NETLINK, whose `errno`
 * field (and message) names the errno: programs switch on `error.errno`, people read the message.
 */
import { constants as osConstants } from 'node:os';
import { errnoNameOfNumber, errnoOf, NOT_A_PERMISSION_KERNEL_MESSAGE, VcnetError } from '../errors.js';
import type { DecodedError } from './codec/reader.js';

/** The name of an errno the kernel answered with (EAGAIN, not its alias EWOULDBLOCK). */
export function errnoName(errno: number): string {
  return errnoNameOfNumber(errno);
}

const hints: Record<string, string> = {
  EEXIST: 'the object already exists: remove it first or use a different name/handle',
  ENODEV: 'no such link: check the interface name or index with `vcnet scan`',
  ENOENT: 'no such object (route, address, qdisc, filter): it may already be gone',
  ESRCH:
    'no object matches the request: it may already be gone, or one is there that differs in an attribute the request names (compare with `ip route show table all`)',
  EPERM: 'run as root (CAP_NET_ADMIN)',
  EOPNOTSUPP: 'this kernel does not support it (a missing module or link type)',
  EINVAL: 'the kernel rejected an argument: see the kernel message',
  EBUSY: 'the device is busy (in use by a VM or bound to a master)',
  ERANGE: 'a value is out of range for this device (MTU?)',
  ENOBUFS:
    "the socket's receive queue overflowed (or the kernel was short of memory) and answers were lost: run the command again",
  EAFNOSUPPORT:
    'the link has no IPv6: its MTU is below 1280 (the least IPv6 allows) or IPv6 is disabled in this kernel (ipv6.disable=1)',
};

/** The kernel's text refusing a filter change by device on a qdisc whose filter block is shared. */
const SHARED_BLOCK_KERNEL_MESSAGE = /filter block is shared/i;

interface RequestLike {
  type: number;
  description: string;
}

/**
 * The kernel refused a request (code VCNET_NETLINK): carries the errno name, the kernel's own text and
 * what was asked.
 */
export class NetlinkError extends VcnetError {
  static override readonly errorName: string = 'NetlinkError';
  readonly errno: string;
  readonly errnoNumber: number;
  readonly kernelMessage: string | undefined;
  readonly request: string;
  readonly namespacePath: string | undefined;
  /**
   * No answer from the kernel was read for this request: its send or a receive failed (a receive
   * buffer overrun, ENOBUFS), or the socket closed. The kernel runs every message of a send to its
   * end, so a change sent this way may have been made, or not: see answerLost.
   */
  readonly answerLost: boolean;
  /**
   * The request was never sent: it was queued behind a request whose answer was lost (notSent), and
   * failed with it unsent, since what follows may depend on it. Nothing of it was made.
   */
  readonly notSent: boolean;

  constructor(
    request: RequestLike,
    decoded: DecodedError,
    namespacePath: string | undefined,
    hint?: string,
    code: 'VCNET_NETLINK' | 'VCNET_NETLINK_DUMP_INTERRUPTED' | 'VCNET_NETLINK_DUMP_OVERRUN' = 'VCNET_NETLINK',
    /** The send or receive that failed, when the kernel's answer was never read (fromFailure). */
    lostBy?: Error,
    /** Set with `lostBy` when the request was never sent (notSent). */
    unsent = false,
  ) {
    const errno = errnoName(decoded.errno);
    const kernel = unsent
      ? ' (not sent: the answer to an earlier request on this socket was lost, so this one was never sent and nothing of it was made)'
      : lostBy
        ? ` (no answer from the kernel: ${lostBy.message})`
        : decoded.kernelMessage
          ? ` (kernel: ${decoded.kernelMessage})`
          : '';
    // EACCES with this kernel text is IPv6 turned off on the link, not a missing privilege.
    const ipv6Off =
      errno === 'EACCES' &&
      decoded.kernelMessage !== undefined &&
      NOT_A_PERMISSION_KERNEL_MESSAGE.test(decoded.kernelMessage);
    // EOPNOTSUPP with this kernel text is a qdisc whose filters live in a shared block (`tc qdisc add
    // dev X ingress_block N ingress`), which takes filters by block index only: not a missing feature.
    const sharedBlock = isSharedBlockText(errno, decoded.kernelMessage);
    super(code, `${request.description} failed: ${errno}${kernel}`, {
      value: request.description,
      ...(lostBy ? { cause: lostBy } : {}),
      hint:
        hint ??
        (ipv6Off
          ? 'IPv6 is turned off on this link (sysctl net.ipv6.conf.<link>.disable_ipv6=1): turn it back on, then run the command again'
          : sharedBlock
            ? "another tool's qdisc on this link keeps its filters in a shared block (ingress_block or egress_block in `tc qdisc show`), which takes no filter by device, as vcnet adds its redirect: use the macvtap model, which adds no filter to the pod link, or have that tool give the link a qdisc of its own"
            : hints[errno]),
    });
    this.errno = errno;
    this.errnoNumber = decoded.errno;
    this.kernelMessage = decoded.kernelMessage;
    this.request = request.description;
    this.namespacePath = namespacePath;
    this.answerLost = lostBy !== undefined && !unsent;
    this.notSent = unsent;
  }

  /**
   * The request was queued behind one whose answer was lost (`cause`: the receive's error) and is
   * failed without being sent: nothing of it was made, as answerLost does not claim.
   */
  static notSent(request: RequestLike, cause: Error, namespacePath: string | undefined): NetlinkError {
    return new NetlinkError(
      request,
      { errno: errnoNumberOf(cause), requestType: request.type, requestSequence: 0 },
      namespacePath,
      'nothing of this request was made: run the command again',
      'VCNET_NETLINK',
      cause,
      true,
    );
  }

  /**
   * The request got no answer because sending or receiving failed (`cause`: the SystemCallError of
   * that call, or why the socket went away): its errno is the call's, the message says which call,
   * and `answerLost` is set (a change sent this way may have been made).
   */
  static fromFailure(request: RequestLike, cause: Error, namespacePath: string | undefined): NetlinkError {
    return new NetlinkError(
      request,
      { errno: errnoNumberOf(cause), requestType: request.type, requestSequence: 0 },
      namespacePath,
      "the kernel's answer was not read (its socket's receive buffer overran, or the socket failed), so whether the change was made is not known: run the command again",
      'VCNET_NETLINK',
      cause,
    );
  }
}

function isSharedBlockText(errno: string, kernelMessage: string | undefined): boolean {
  return errno === 'EOPNOTSUPP' && kernelMessage !== undefined && SHARED_BLOCK_KERNEL_MESSAGE.test(kernelMessage);
}

/**
 * Whether a failure is the kernel refusing a filter by device on a qdisc whose filters are a shared
 * block (`ingress_block N`): its hint names the remedy for a redirect on the pod link, which a
 * caller that knows the filter is another one (an existing macvtap's rate limit) replaces.
 */
export function sharedBlockRefused(error: unknown): boolean {
  return error instanceof NetlinkError && isSharedBlockText(error.errno, error.kernelMessage);
}

/**
 * Whether a failure is a change the kernel was asked to make and whose answer was never read
 * (NetlinkError.answerLost): it may have been made. A refusal the kernel sent (NLMSG_ERROR) was not.
 */
export function answerLost(error: unknown): boolean {
  return error instanceof NetlinkError && error.answerLost;
}

/**
 * The errno number of a failed call: SystemCallError names it (`errno: 'ENOBUFS'`), the native shim's
 * and Node's raw errors carry the number. EIO when the cause has none (a socket closed under the request).
 */
function errnoNumberOf(cause: Error): number {
  const name = errnoOf(cause);
  if (name !== undefined && Object.hasOwn(osConstants.errno, name)) {
    return osConstants.errno[name as keyof typeof osConstants.errno];
  }
  const number = (cause as NodeJS.ErrnoException).errno;
  return typeof number === 'number' && number !== 0 ? Math.abs(number) : osConstants.errno.EIO;
}

/**
 * A dump came back marked NLM_F_DUMP_INTR (the namespace changed while the kernel was sending it)
 * on every attempt: its contents could be half old, half new, so it is not used.
 */
export class DumpInterruptedError extends NetlinkError {
  static override readonly errorName: string = 'DumpInterruptedError';
  readonly attempts: number;

  constructor(request: RequestLike, attempts: number, namespacePath: string | undefined) {
    super(
      request,
      {
        errno: osConstants.errno.EINTR,
        kernelMessage: `the namespace changed during each of ${attempts} attempts (NLM_F_DUMP_INTR)`,
        requestType: request.type,
        requestSequence: 0,
      },
      namespacePath,
      'something keeps changing the namespace; try again when it is quieter',
      // Its own code, so that the CNI runtime hears "try again later" (11) and the agent UNAVAILABLE.
      'VCNET_NETLINK_DUMP_INTERRUPTED',
    );
    this.attempts = attempts;
  }
}

/**
 * Every attempt at a dump met a receive that failed with ENOBUFS (the socket's receive queue
 * overflowed, or the kernel was short of memory): the dump was drained and sent again each time, and
 * is not used. Nothing was changed by it: running the command again later is safe.
 */
export class DumpOverrunError extends NetlinkError {
  static override readonly errorName: string = 'DumpOverrunError';
  readonly attempts: number;

  constructor(request: RequestLike, attempts: number, cause: Error, namespacePath: string | undefined) {
    super(
      request,
      {
        errno: osConstants.errno.ENOBUFS,
        kernelMessage: undefined,
        requestType: request.type,
        requestSequence: 0,
      },
      namespacePath,
      'the kernel dropped answers (a flood of netlink messages, or memory short): run the command again in a moment',
      // Its own code, so that the CNI runtime hears "try again later" (11) and the agent UNAVAILABLE.
      'VCNET_NETLINK_DUMP_OVERRUN',
    );
    this.message = `${this.message} (the socket's receive queue overflowed during each of ${attempts} attempts)`;
    this.cause = cause;
    this.attempts = attempts;
  }
}

/** A NetlinkHandle (or its socket) used after close(): a caller's mistake, nothing was sent. */
export class NetlinkClosedError extends VcnetError {
  static override readonly errorName: string = 'NetlinkClosedError';
  constructor(namespacePath: string | undefined) {
    super('VCNET_HANDLE_CLOSED', `the netlink socket of ${namespacePath ?? 'the current namespace'} is closed`, {
      value: namespacePath,
      hint: 'open a new NetlinkHandle: one that was closed cannot be used again',
    });
  }
}

/** No link of that name or ifindex in the namespace (code VCNET_LINK_NOT_FOUND). */
export class LinkNotFoundError extends VcnetError {
  static override readonly errorName: string = 'LinkNotFoundError';
  constructor(name: string | number, namespacePath: string | undefined) {
    super('VCNET_LINK_NOT_FOUND', `no link ${JSON.stringify(name)} in ${namespacePath ?? 'the current namespace'}`, {
      value: name,
      hint: 'list the links with `vcnet scan --netns PATH` or `ip -n NS link`',
    });
  }
}
