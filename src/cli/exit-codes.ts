/**
 * Exit codes, stable and documented (docs/cli.md):
 *   0 success (also: detach of a sandbox that is not attached)
 *   1 the operation failed (kernel refused, hypervisor or agent error)
 *   2 bad input (flag, file, JSON) — nothing was changed
 *   3 not permitted (run as root)
 *   4 the sandbox is locked by another vcnet process
 *   5 something vcnet needs is missing (native shim, kernel feature, package)
 *   6 the operation succeeded but its output on stdout was lost (a full disk, a closed pipe)
 * Which error gets which code is decided by the shared classifier (classifyError, src/errors.ts).
 */
import { classifyError, type ExitOutcome } from '../errors.js';

export const ExitCode = {
  OK: 0,
  FAILED: 1,
  BAD_INPUT: 2,
  NOT_PERMITTED: 3,
  LOCKED: 4,
  MISSING: 5,
} as const satisfies Record<ExitOutcome | 'OK', number>;

/**
 * Not a failure of the operation, so not one of the classifier's outcomes: what it changed is done,
 * but the caller did not get the result (a runtime reading the JSON must not take exit 0 for it).
 * vcnet-cni exits with it too.
 */

export function exitCodeFor(error: unknown): number {
  return ExitCode[classifyError(error).exit];
}
