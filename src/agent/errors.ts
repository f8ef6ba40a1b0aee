/** Errors of the agent layer: the ttrpc client's call failures, connecting, and the guest side. */
import { hintFromCause, VcnetError } from '../errors.js';
import { StatusCode, statusCodeName } from './ttrpc/status-code.js';

/**
 * A ttrpc call did not succeed: the agent answered with a non-OK status, or the call failed locally
 * (deadline, connection closed, oversize frame), in which case `local` is true and `status` is the
 * google.rpc code that describes it best (DEADLINE_EXCEEDED, UNAVAILABLE, RESOURCE_EXHAUSTED...).
 * One code, VCNET_AGENT_STATUS, for all of them: `statusName` and the message name the status.
 */
export class AgentStatusError extends VcnetError {
  static override readonly errorName: string = 'AgentStatusError';
  readonly status: number;
  readonly statusName: string;
  /** The agent's own message (or the local reason), without vcnet's decoration. */
  readonly statusMessage: string;
  /** "grpc.AgentService/UpdateInterface" */
  readonly method: string;
  readonly local: boolean;

  constructor(
    status: number,
    statusMessage: string,
    method: string,
    options: { local?: boolean; cause?: unknown } = {},
  ) {
    const name = statusCodeName(status);
    super('VCNET_AGENT_STATUS', `${method}: ${name}: ${statusMessage}`, {
      value: method,
      hint: hintForStatus(status, options.local ?? false, method),
      cause: options.cause,
    });
    this.status = status;
    this.statusName = name;
    this.statusMessage = statusMessage;
    this.method = method;
    this.local = options.local ?? false;
  }
}

/** GetIPTables and SetIPTables fail for reasons of their own: a guest without iptables, rules refused. */
function ipTablesHint(status: number, method: string): string | undefined {
  if (!/\/(Get|Set)IPTables$/.test(method)) return undefined;
  switch (status) {
    case StatusCode.NOT_FOUND:
      return 'the guest has no iptables-save / iptables-restore (ip6tables-save / ip6tables-restore for --v6) on its PATH: install the iptables package in the guest image';
    case StatusCode.UNIMPLEMENTED:
      return "this agent does not serve GetIPTables/SetIPTables: vcnet's guest agent serves them from 0.1.0 (session 21) on, Kata's agent unless its policy forbids the call";
    case StatusCode.INTERNAL:
      return method.endsWith('/SetIPTables')
        ? 'iptables-restore in the guest refused the rules: the message quotes it ("Error occurred at line: N" names the line of the file); the tables it did not commit are unchanged'
        : 'iptables-save in the guest failed: the message quotes what it said';
    default:
      return undefined;
  }
}

function hintForStatus(status: number, local: boolean, method: string): string | undefined {
  const ipTables = local ? undefined : ipTablesHint(status, method);
  if (ipTables) return ipTables;
  switch (status) {
    case StatusCode.INVALID_ARGUMENT:
      return 'the guest agent refused a value of the request (the message names the field and what it accepts): check that the agent is a Kata-compatible one; if it is, report the message as a vcnet bug';
    case StatusCode.NOT_FOUND:
      return 'the guest has no such link: check the MAC address / PCI path, or whether the NIC was plugged';
    case StatusCode.UNIMPLEMENTED:
      return 'this agent does not implement the call: check the agent version';
    case StatusCode.DEADLINE_EXCEEDED:
      return local
        ? 'no answer in time: is the guest booted and the agent running on agent.channel.0? raise the timeout'
        : 'the agent gave up at the deadline: raise the timeout';
    case StatusCode.UNAVAILABLE:
      return 'the connection to the agent closed: the VM may have stopped or the agent exited';
    case StatusCode.RESOURCE_EXHAUSTED:
      return "a message exceeded ttrpc's 4 MiB limit: send fewer routes/neighbours per call";
    default:
      return undefined;
  }
}

/** The agent's unix socket could not be connected before the deadline. */
export class AgentConnectError extends VcnetError {
  static override readonly errorName: string = 'AgentConnectError';
  readonly socketPath: string;
  readonly attempts: number;
  /**
   * Why it failed without the attempt count and time the message gives (the cause's errno code, or
   * its text): the same from one try to the next, for callers that say a failure once (watch).
   */
  readonly reason: string;
  /**
   * The attempts stopped at the deadline while the socket was missing, refusing or slow to take the
   * connection (what a later attempt may get past: the VM still starting, a full listen queue), not
   * at a failure no retry changes (EACCES, ENOTSOCK) or the caller's cancel.
   */
  readonly deadlineReached: boolean;
  constructor(
    socketPath: string,
    attempts: number,
    elapsedMs: number,
    cause: unknown,
    hint?: string,
    more: { deadlineReached?: boolean; note?: string } = {},
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      'VCNET_AGENT_CONNECT',
      `could not connect to the agent socket ${socketPath} after ${attempts} attempts in ${elapsedMs} ms: ${reason}${more.note ? ` (${more.note})` : ''}`,
      {
        value: socketPath,
        hint:
          hint ??
          'check that the VM runs and serves the agent on that socket (QEMU: -chardev socket,id=agent,path=SOCK,server=on,wait=off and a virtserialport named agent.channel.0; Cloud Hypervisor and Firecracker: give hvsock://VSOCK_SOCKET:1024), and that the guest has booted',
        cause,
      },
    );
    this.socketPath = socketPath;
    this.attempts = attempts;
    this.deadlineReached = more.deadlineReached === true;
    const errno = (cause as NodeJS.ErrnoException | undefined)?.code;
    this.reason = typeof errno === 'string' ? errno : reason;
  }
}

/** No guest link matches an interface request (by MAC address or PCI path), or a route/neighbour device. */
export class GuestLinkNotFoundError extends VcnetError {
  static override readonly errorName: string = 'GuestLinkNotFoundError';
  readonly field: string;
  constructor(field: string, value: string, what: string) {
    // Same code as netlink's LinkNotFoundError: the agent server maps both to NOT_FOUND.
    super('VCNET_LINK_NOT_FOUND', `${field}: no link ${what} ${JSON.stringify(value)} in the guest`, {
      value,
      hint: 'list the guest links with ListInterfaces; a hot-plugged NIC may not have appeared yet',
    });
    this.field = field;
  }
}

/**
 * Applying a request failed part-way; what was done has been undone (or `undoFailures` says what was
 * not, and `undoErrors` holds the errors behind them, errno and all).
 */
export class NetworkApplyError extends VcnetError {
  static override readonly errorName: string = 'NetworkApplyError';
  readonly step: string;
  readonly undoFailures: string[];
  readonly undoErrors: readonly unknown[];
  constructor(
    operation: string,
    step: string,
    cause: unknown,
    undoFailures: string[],
    /** The errors behind `undoFailures`, in the same order. */
    undoErrors: readonly unknown[] = [],
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    // Each call is undone on its own: after UpdateRoutes or AddARPNeighbors the interfaces keep what
    // the UpdateInterface calls before them set.
    const earlierCallsStay = /^(UpdateRoutes|AddARPNeighbors)\b/.test(operation)
      ? `; only this call's ${operation.startsWith('UpdateRoutes') ? 'routes' : 'neighbours'}: the interfaces keep the addresses, MTU and names UpdateInterface gave them`
      : '';
    const undo =
      undoFailures.length === 0
        ? `everything done before was undone${earlierCallsStay}`
        : `undoing failed too, the guest is half-changed: ${undoFailures.join('; ')}`;
    super('VCNET_AGENT_APPLY_FAILED', `${operation} failed at "${step}": ${reason} (${undo})`, {
      value: step,
      hint: cause instanceof VcnetError ? cause.hint : undefined,
      cause,
    });
    this.step = step;
    this.undoFailures = undoFailures;
    this.undoErrors = undoErrors;
  }
}

/**
 * Putting back what a failed call changed (a link's addresses, the routes, the neighbours) was refused
 * for some of it: the message lists every refusal, `refusals` holds them, and the first is the cause,
 * so the one classifier reads its errno (an EPERM is "not permitted" here as anywhere else).
 */
export class GuestRestoreError extends VcnetError {
  static override readonly errorName: string = 'GuestRestoreError';
  readonly refusals: readonly unknown[];
  constructor(
    /** What was being put back: "the addresses of link 3", "the routes", "the neighbours". */
    what: string,
    refusals: readonly unknown[],
  ) {
    const first = refusals[0];
    // Only the refusals: the undo that failed ("restore the addresses of eth0") is named around it.
    super('VCNET_AGENT_APPLY_FAILED', refusals.map(messageOf).join('; '), {
      value: what,
      hint: hintFromCause(first),
      ...(first === undefined ? {} : { cause: first }),
    });
    this.refusals = refusals;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The guest has no virtio-serial port with the agent's name. */
export class AgentPortNotFoundError extends VcnetError {
  static override readonly errorName: string = 'AgentPortNotFoundError';
  constructor(portName: string, searched: string) {
    super('VCNET_AGENT_PORT_NOT_FOUND', `no virtio-serial port named ${portName} under ${searched}`, {
      value: portName,
      hint: 'start QEMU with -device virtio-serial-pci -device virtserialport,chardev=agent,name=agent.channel.0 and load virtio_console in the guest',
    });
  }
}

/** Inside the guest: a program the agent runs is not on its PATH (iptables-save for GetIPTables...). */
export class GuestProgramMissingError extends VcnetError {
  static override readonly errorName: string = 'GuestProgramMissingError';
  readonly program: string;
  constructor(program: string, searched: string, hint: string) {
    super('VCNET_GUEST_PROGRAM_MISSING', `${program} is not installed in the guest: not found in PATH ${searched}`, {
      value: program,
      hint,
    });
    this.program = program;
  }
}

/** Inside the guest: iptables-save or iptables-restore (ip6tables-*) failed; carries what it printed on stderr. */
export class IpTablesCommandError extends VcnetError {
  static override readonly errorName: string = 'IpTablesCommandError';
  readonly program: string;
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(program: string, reason: string, stderr: string, exitCode: number | null, cause?: unknown) {
    // One line: iptables' own lines joined, without its closing "Try `iptables-restore -h' ..." advice.
    const said = stderr
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('Try `'))
      .join('; ');
    super('VCNET_IPTABLES_FAILED', `${program} failed (${reason})${said ? `: ${said}` : ''}`, {
      value: program,
      hint: program.endsWith('-restore')
        ? 'fix the rules: iptables-restore names the line it refused ("Error occurred at line: N")'
        : undefined,
      cause,
    });
    this.program = program;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}
