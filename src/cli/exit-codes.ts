/**
 * Exit codes, stable and documented (docs/cli.md):
 *   0 success (also: detach of a sandbox that is not attached)
 *   1 the operation failed (kernel refused, hypervisor or agent error)
 *   2 bad input (flag, file, JSON) — nothing was changed
 *   3 not permitted (run as root)
 *   4 the sandbox is locked by another vcnet process
 *   5 something vcnet needs is missing (native shim, kernel feature, package)
 */
import { VcnetError } from '../errors.js';

export const ExitCode = { OK: 0, FAILED: 1, BAD_INPUT: 2, NOT_PERMITTED: 3, LOCKED: 4, MISSING: 5 } as const;

export function exitCodeFor(error: unknown): number {
  if (!(error instanceof VcnetError)) return ExitCode.FAILED;
  if (
    error.code === 'VCNET_INVALID_INPUT' ||
    error.code === 'VCNET_CONFIG_CONFLICT' ||
    error.code === 'VCNET_CONFIG_SYNTAX' ||
    error.code === 'VCNET_HOST_NAMESPACE'
  ) {
    return ExitCode.BAD_INPUT;
  }
  if (error.code === 'VCNET_SANDBOX_LOCKED') return ExitCode.LOCKED;
  if (error.code === 'VCNET_NATIVE_MISSING') return ExitCode.MISSING;
  const errno = (error as { errno?: unknown }).errno;
  if (errno === 'EPERM' || errno === 'EACCES' || error.code === 'NETLINK_EPERM') return ExitCode.NOT_PERMITTED;
  return ExitCode.FAILED;
}
