/**
 * CNI errors: what the plugin prints on stdout when a command fails ({cniVersion, code, msg, details},
 * exit status 1), with the spec's well-known codes (1-11) and vcnet's own (100+, which the spec leaves
 * to plugins). Every vcnet error keeps its stable VCNET_* code and hint in `details`. Which error gets
 * which code is decided by the shared classifier (classifyError, src/errors.ts).
 */
import {
  type CniOutcome,
  classifyError,
  describeGivenValue,
  type ErrorCode,
  hintForErrno,
  VcnetError,
} from '../errors.js';
import { type OpenFileLimit, openFileLimitHint, readOpenFileLimit } from './file-limit.js';

/** CNI spec 1.0.0, "Error": codes 1-99 are reserved for these meanings. */
export const CniErrorCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENVIRONMENT: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_NETWORK_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS (1.1.0): the plugin cannot serve ADD now. */
  PLUGIN_NOT_AVAILABLE: 50,
  /** Any other vcnet failure; `details` names the VCNET_* code. */
  VCNET_FAILED: 100,
  /** CNI_IFNAME is not in CNI_NETNS: the plugin before vcnet-cni did not create it. */
  INTERFACE_NOT_FOUND: 101,
  /** ADD for a container and interface vcnet-cni already attached (DEL first). */
  ALREADY_ADDED: 102,
  /**
   * The attach could not be made: the kernel refused part of it (what was made is removed again), or
   * a link vcnet must create is named like one already there (VCNET_LINK_NAME_TAKEN, before anything
   * is made).
   */
  ATTACH_FAILED: 103,
  /** DEL could not undo everything; the state is kept so DEL can be retried. */
  DETACH_INCOMPLETE: 104,
  /** CHECK found the plumbing different from what ADD recorded. */
  CHECK_FAILED: 105,
  /** The state file under stateDir is unreadable or from another version. */
  STATE_INVALID: 106,
  /** CNI_IFNAME is a kind of interface vcnet cannot give to a VM (a bridge, a tun...). */
  UNSUPPORTED_INTERFACE: 107,
  /** The plugin lacks CAP_NET_ADMIN / CAP_SYS_ADMIN. */
  NOT_PERMITTED: 108,
  /** Not a VcnetError: a bug in vcnet-cni (the number libcni itself uses for internal errors). */
  INTERNAL: 999,
} as const satisfies Record<CniOutcome | 'UNKNOWN_CONTAINER' | 'IO_FAILURE', number>;
export type CniErrorCodeNumber = (typeof CniErrorCode)[keyof typeof CniErrorCode];

/**
 * A failure of the CNI plugin itself (bad environment, bad config, CHECK mismatch...). Its CNI code is
 * not given: the registry row of `code` names it, and `cniCode` is what the classifier (cniCodeFor)
 * reports for this error, so the two cannot disagree.
 */
export class CniError extends VcnetError {
  static override readonly errorName: string = 'CniError';
  constructor(code: ErrorCode, message: string, options: { value?: unknown; hint?: string; cause?: unknown } = {}) {
    super(code, message, options);
  }

  /** The CNI error code the plugin reports for this error (cniCodeFor, which follows `cause`). */
  get cniCode(): CniErrorCodeNumber {
    return cniCodeFor(this);
  }
}

/** A required CNI_* variable is missing or malformed (code 4; the message names the variable). */
export class CniEnvironmentError extends CniError {
  static override readonly errorName: string = 'CniEnvironmentError';
  readonly variable: string;
  /** `problem`, when given, says what is wrong with `value` before what is accepted. */
  constructor(variable: string, value: string | undefined, accepted: string, problem?: string) {
    super(
      'VCNET_CNI_ENVIRONMENT',
      value === undefined || value === ''
        ? `environment variable ${variable} is missing (required: ${accepted})`
        : `environment variable ${variable} is invalid: ${JSON.stringify(value)} (${problem ? `${problem}; ` : ''}accepted: ${accepted})`,
      {
        value,
        hint:
          value === undefined || value === ''
            ? `the container runtime sets ${variable}; when running by hand, export it`
            : `${variable} is set, but its value is invalid: fix what sets it (the container runtime, or your shell when running by hand)`,
      },
    );
    this.variable = variable;
  }
}

/** The network configuration on stdin fails validation (code 7; the message names the field). */
export class CniConfigError extends CniError {
  static override readonly errorName: string = 'CniConfigError';
  readonly field: string;
  constructor(field: string, value: unknown, problem: string, hint?: string) {
    super(
      'VCNET_CNI_CONFIG',
      `invalid network config: ${field}: ${problem}${value === undefined ? '' : ` (got ${describeGivenValue(value)})`}`,
      { value, hint: hint ?? `fix "${field}" in the network configuration (conflist) of this plugin` },
    );
    this.field = field;
  }
}

/**
 * The CNI code for any error a command raised: the one mapping, from the registry row of the error
 * the classifier finds deciding in the cause chain (a CniError's own `cniCode` is this too).
 */
export function cniCodeFor(error: unknown): CniErrorCodeNumber {
  return CniErrorCode[classifyError(error).cni];
}

/** The error object of the CNI spec, printed on stdout. */
export interface CniErrorReply {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/**
 * The hint of a CNI error: the error's own, except the general one for EMFILE (which speaks to a
 * shell's user: ulimit -n), which becomes the plugin's, naming its limit and its runtime's setting.
 */
function hintForRuntime(hint: string | undefined, openFileLimit: () => OpenFileLimit | undefined): string | undefined {
  return hint !== undefined && hint === hintForErrno('EMFILE') ? openFileLimitHint(openFileLimit()) : hint;
}

export function cniErrorReply(
  error: unknown,
  cniVersion: string,
  options: { openFileLimit?: OpenFileLimit | undefined } = {},
): CniErrorReply {
  const code = cniCodeFor(error);
  if (error instanceof VcnetError) {
    // The deciding VCNET_* code (followed through `cause`), as the CNI code is decided.
    // What the CLI's --json error carries besides: the errno that decided, and the outer code when a
    // wrapper carried the deciding error (the deciding code stays first, for programs to match on).
    const { code: decided, errno } = classifyError(error);
    const carried = [
      ...(errno ? [`errno ${errno}`] : []),
      ...(decided !== error.code ? [`outerCode ${error.code}`] : []),
    ];
    const head = carried.length > 0 ? `${decided} (${carried.join(', ')})` : decided;
    const hint = hintForRuntime(error.hint, () => options.openFileLimit ?? readOpenFileLimit());
    return {
      cniVersion,
      code,
      msg: error.message,
      details: hint ? `${head}: ${hint}` : head,
    };
  }
  const failure = error instanceof Error ? error : new Error(String(error));
  return {
    cniVersion,
    code,
    msg: failure.message,
    details: `internal error in vcnet-cni, please report it: ${failure.stack ?? failure.message}`,
  };
}
