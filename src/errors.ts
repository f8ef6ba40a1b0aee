/**
 * Every error vcnet raises is a VcnetError: a stable `code` programs can switch on, the offending
 * `value`, and a `hint` that tells a person what to do about it.
 */
export class VcnetError extends Error {
  readonly code: string;
  readonly value: unknown;
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { value?: unknown; hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.value = options.value;
    this.hint = options.hint;
  }

  /** A JSON-friendly view for `--json` output and logs. */
  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, value: this.value, hint: this.hint };
  }
}

/** Bad input from a user or a caller: names the field, the value and what is accepted. */
export class InvalidInputError extends VcnetError {
  readonly field: string;
  constructor(field: string, value: unknown, accepted: string, hint?: string) {
    super('VCNET_INVALID_INPUT', `invalid ${field}: ${JSON.stringify(value)} (accepted: ${accepted})`, {
      value,
      hint: hint ?? `set ${field} to ${accepted}`,
    });
    this.field = field;
  }
}

/** A system call made by the native shim failed. */
export class SystemCallError extends VcnetError {
  readonly errno: string;
  readonly syscall: string;
  constructor(operation: string, cause: NodeJS.ErrnoException & { detail?: string }, hint?: string) {
    const errno = String(cause.code ?? 'EUNKNOWN');
    super('VCNET_SYSCALL', `${operation} failed: ${cause.message}`, {
      value: cause.detail,
      hint: hint ?? hintForErrno(errno),
      cause,
    });
    this.errno = errno;
    this.syscall = cause.syscall ?? operation;
  }
}

export function hintForErrno(errno: string): string | undefined {
  switch (errno) {
    case 'EPERM':
    case 'EACCES':
      return 'vcnet changes network namespaces and devices: run it as root (CAP_NET_ADMIN and CAP_SYS_ADMIN)';
    case 'ENOENT':
      return 'the namespace, device or file does not exist: check the path (ip netns list shows named namespaces)';
    case 'EEXIST':
      return 'an object of that name already exists: pick another name or remove the old one first';
    case 'EBUSY':
      return 'the object is in use (a running VM holds the tap?): stop its user first';
    case 'EOPNOTSUPP':
      return 'this kernel does not support the operation (a missing module or device type)';
    default:
      return undefined;
  }
}

/**
 * An attach failed and undoing it was refused too: `left` names what is still there, and the
 * record keeps exactly that for `vcnet detach` or `vcnet gc`.
 */
export class RollbackIncompleteError extends VcnetError {
  readonly left: unknown[];
  constructor(what: string, cause: Error, failures: string[], leftObjects: string[], left: unknown[]) {
    super(
      'VCNET_ROLLBACK_INCOMPLETE',
      `${what} failed: ${cause.message}; undoing it failed too (${failures.join('; ')}): left ${leftObjects.join(', ')}`,
      {
        value: leftObjects,
        hint: 'the sandbox record keeps what is left: run `vcnet detach` (or `vcnet gc`) once the cause is fixed',
        cause,
      },
    );
    this.left = left;
  }
}

/** A detach (or DEL, del-iface) whose undo the kernel refused in part: the record keeps what is left. */
export class DetachIncompleteError extends VcnetError {
  constructor(what: string, failures: string[], leftObjects: string[], recordPath: string) {
    super(
      'VCNET_DETACH_INCOMPLETE',
      `${what} left ${leftObjects.length} object(s) in place: ${leftObjects.join(', ')} (${failures.join('; ')})`,
      {
        value: leftObjects,
        hint: `${recordPath} keeps them: run the command again (what is already gone is skipped), or \`vcnet gc\``,
      },
    );
  }
}
