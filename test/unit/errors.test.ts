/**
 * The error registry, the brands and the one classifier: one failure maps the same way to the CLI's
 * exit status, the CNI code and the agent's status, however deeply it is wrapped; and the registry,
 * the call sites and docs/troubleshooting.md agree.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { GuestLinkNotFoundError, NetworkApplyError } from '../../src/agent/errors.js';
import { agentStatusOf } from '../../src/agent/server.js';
import { StatusCode } from '../../src/agent/ttrpc/status-code.js';
import { ExitCode, exitCodeFor } from '../../src/cli/exit-codes.js';
import { CniError, CniErrorCode, cniCodeFor, cniErrorReply } from '../../src/cni/errors.js';
import { ErrnoOutcomes, type ErrorCode, ErrorCodes } from '../../src/error-codes.js';
import {
  causeChain,
  classifyError,
  errnoOf,
  hintForErrno,
  InvalidInputError,
  isTransientFailure,
  RollbackIncompleteError,
  SystemCallError,
  VcnetError,
} from '../../src/errors.js';
import { DumpInterruptedError, NetlinkError } from '../../src/netlink/errors.js';
import { UnsupportedInterfaceError } from '../../src/network/endpoint/create-endpoint.js';
import { AttachError } from '../../src/network/model/plumbing-context.js';
import { StateWriteError } from '../../src/network/state/atomic-file.js';
import { SandboxLockedError } from '../../src/network/state/store.js';

const root = new URL('../../', import.meta.url).pathname;

function netlinkError(errno: number): NetlinkError {
  return new NetlinkError(
    { type: 16, description: 'add link tap0' },
    { errno, requestType: 16, requestSequence: 7 },
    '/run/netns/pod',
  );
}

/** What the three outward mappings give for one error. */
function outward(error: unknown): { exit: number; cni: number; agent: number } {
  return { exit: exitCodeFor(error), cni: cniCodeFor(error), agent: agentStatusOf(error).code };
}

describe('VcnetError', () => {
  it('InvalidInputError names the field, the value and what is accepted', () => {
    const error = new InvalidInputError('mtu', 20, 'an integer from 68 to 65535');
    expect(error).toBeInstanceOf(VcnetError);
    expect(error.code).toBe('VCNET_INVALID_INPUT');
    expect(error.message).toContain('mtu');
    expect(error.message).toContain('20');
    expect(error.message).toContain('68 to 65535');
    expect(error.toJSON()).toMatchObject({ code: 'VCNET_INVALID_INPUT', value: 20 });
  });

  it('InvalidInputError says a field nobody gave is not given (not "undefined")', () => {
    const error = new InvalidInputError('--agent', undefined, "the guest agent's socket");
    expect(error.message).toBe(`invalid --agent: not given (accepted: the guest agent's socket)`);
  });

  it('InvalidInputError quotes at most 200 characters of a long value, and keeps the whole value', () => {
    const long = 'x'.repeat(100_000);
    const error = new InvalidInputError('tapOwner', long, 'a user name or id');
    expect(error.message).toBe(
      `invalid tapOwner: "${'x'.repeat(199)}… (100002 characters in all) (accepted: a user name or id)`,
    );
    expect(error.value).toBe(long);
  });

  it('a refused system call hints "run it as root" only to a process that is not root', () => {
    // Optional in Node's types (absent on Windows), present here.
    const geteuid = vi.spyOn(process as { geteuid: () => number }, 'geteuid');
    try {
      for (const errno of ['EACCES', 'EPERM']) {
        geteuid.mockReturnValue(1000);
        expect(hintForErrno(errno)).toContain('run it as root');
        geteuid.mockReturnValue(0);
        expect(hintForErrno(errno)).toContain('vcnet runs as root and was still refused');
        expect(hintForErrno(errno)).not.toContain('run it as root');
      }
    } finally {
      geteuid.mockRestore();
    }
  });

  it('a system call refused for want of file descriptors (EMFILE, ENFILE) hints at the limit to raise', () => {
    const perProcess = new SystemCallError(
      'open /var/run/netns/pod',
      Object.assign(new Error('too many open files'), { code: 'EMFILE' }),
    );
    expect(perProcess.hint).toContain('ulimit -n');
    expect(perProcess.hint).toContain('LimitNOFILE=');
    expect(hintForErrno('ENFILE')).toContain('fs.file-max');
    const write = new StateWriteError(
      '/run/vcnet/sandboxes/sb/state.json',
      Object.assign(new Error('too many open files'), { code: 'EMFILE' }),
    );
    expect(write.hint).toContain('ulimit -n');
  });

  it('netlink refusals are one family, VCNET_NETLINK, with the errno as a field and in the message', () => {
    const error = netlinkError(17);
    expect(error).toMatchObject({ code: 'VCNET_NETLINK', errno: 'EEXIST', errnoNumber: 17 });
    expect(error.message).toBe('add link tap0 failed: EEXIST');
    expect(error.toJSON()).toMatchObject({ code: 'VCNET_NETLINK', errno: 'EEXIST' });
  });

  it('instanceof checks the brands: per class, and for the base class', () => {
    const invalid = new InvalidInputError('mtu', 20, 'a number');
    expect(invalid instanceof InvalidInputError).toBe(true);
    expect(invalid instanceof VcnetError).toBe(true);
    expect(invalid instanceof SystemCallError).toBe(false);
    expect(new Error('plain') instanceof VcnetError).toBe(false);
    expect((null as unknown) instanceof VcnetError).toBe(false);
    // The brands stay out of JSON and of the enumerable keys.
    expect(Object.keys(invalid)).not.toContain(Symbol.for('vcnet.error'));
    expect(JSON.stringify(invalid)).not.toContain('vcnet.error');
    const branded = Object.defineProperty({}, Symbol.for('vcnet.error.InvalidInputError'), { value: true });
    expect(branded instanceof InvalidInputError).toBe(true);
    expect(branded instanceof VcnetError).toBe(false);
  });

  it('instanceof works across two copies of the module (what two installed copies of vcnet are)', async () => {
    // A query string makes the loader evaluate the module a second time: separate classes, same brands.
    const secondCopy: string = '../../src/errors.js?second-copy';
    const copy = (await import(secondCopy)) as typeof import('../../src/errors.js');
    expect(copy.VcnetError).not.toBe(VcnetError);
    const foreign = new copy.InvalidInputError('queues', 0, 'a positive integer');
    expect(Object.getPrototypeOf(foreign)).not.toBe(InvalidInputError.prototype);
    expect(foreign instanceof VcnetError).toBe(true);
    expect(foreign instanceof InvalidInputError).toBe(true);
    expect(foreign instanceof SystemCallError).toBe(false);
    expect(new InvalidInputError('a', 1, 'b') instanceof copy.VcnetError).toBe(true);
    expect(exitCodeFor(foreign)).toBe(ExitCode.BAD_INPUT);
  });

  it('names and brands by errorName, not by the runtime class name', () => {
    // What a bundler does: the class is renamed, the errorName it states stays.
    const Renamed = {
      _StableError: class extends InvalidInputError {
        static override readonly errorName: string = 'StableError';
      },
    }._StableError;
    expect(Renamed.name).toBe('_StableError');
    const renamed = new Renamed('mtu', 1, 'a number');
    expect(renamed.name).toBe('StableError');
    expect(renamed instanceof InvalidInputError).toBe(true);
    expect(
      Object.assign(Object.create(null), { [Symbol.for('vcnet.error.StableError')]: true }) instanceof Renamed,
    ).toBe(true);
    expect(new InvalidInputError('mtu', 1, 'a number').name).toBe('InvalidInputError');
    // A caller's class called AttachError is not vcnet's AttachError, nor branded as one.
    class AttachErrorOfTheirOwn extends VcnetError {
      static override readonly errorName: string = 'MyAttachError';
    }
    const theirs = new AttachErrorOfTheirOwn('VCNET_ERROR', 'theirs');
    expect(theirs.name).toBe('MyAttachError');
    expect(theirs instanceof AttachError).toBe(false);
    const sameName = { AttachError: class extends VcnetError {} }.AttachError;
    expect(new sameName('VCNET_ERROR', 'x') instanceof AttachError).toBe(false);
    expect(Object.getOwnPropertySymbols(new sameName('VCNET_ERROR', 'x'))).toEqual([Symbol.for('vcnet.error')]);
  });
});

describe('classifyError', () => {
  it('follows cause chains outermost first, and stops at a cycle', () => {
    const inner = new Error('inner');
    const outer = new Error('outer', { cause: inner });
    expect(causeChain(outer)).toEqual([outer, inner]);
    const looped = new Error('a') as Error & { cause?: unknown };
    looped.cause = new Error('b', { cause: looped });
    expect(causeChain(looped)).toHaveLength(2);
    expect(classifyError(looped).code).toBe('VCNET_ERROR');
  });

  it('reads errno names from vcnet errors, Node system errors and the native shim', () => {
    expect(errnoOf(netlinkError(1))).toBe('EPERM');
    const system = Object.assign(new Error('open'), { code: 'EACCES', errno: -13, syscall: 'open' });
    expect(errnoOf(system)).toBe('EACCES');
    expect(errnoOf(new SystemCallError('open netns', system))).toBe('EACCES');
    // An application's own `code` is not an errno.
    expect(errnoOf(Object.assign(new Error('x'), { code: 'ERR_SOMETHING' }))).toBeUndefined();
    expect(errnoOf(new InvalidInputError('a', 1, 'b'))).toBeUndefined();
  });

  it('maps an EPERM the same way everywhere, however it is wrapped', () => {
    const permission = { exit: ExitCode.NOT_PERMITTED, cni: CniErrorCode.NOT_PERMITTED, agent: 7 };
    expect(StatusCode.PERMISSION_DENIED).toBe(7);
    expect(outward(netlinkError(1))).toEqual(permission);
    expect(outward(new AttachError('eth0', netlinkError(1), true))).toEqual(permission);
    const syscall = new SystemCallError(
      'create tap',
      Object.assign(new Error('Operation not permitted'), { code: 'EPERM', errno: 1, syscall: 'ioctl' }),
    );
    expect(outward(new AttachError('eth0', syscall, true))).toEqual(permission);
    // A state file the process may not read: EACCES under another error still says "not permitted".
    const unreadable = Object.assign(new Error('EACCES: permission denied'), {
      code: 'EACCES',
      errno: -13,
      syscall: 'open',
    });
    expect(outward(new VcnetError('VCNET_STATE_INVALID', 'cannot read', { cause: unreadable }))).toEqual(permission);
    expect(classifyError(new AttachError('eth0', netlinkError(1), true))).toMatchObject({
      code: 'VCNET_NETLINK',
      errno: 'EPERM',
    });
  });

  it('keeps VCNET_ROLLBACK_INCOMPLETE deciding when the failure it wraps carries EPERM (objects were left)', () => {
    const denied = new AttachError('eth0', netlinkError(1), true);
    const rollback = new RollbackIncompleteError('attach', denied, ['EACCES'], ['addresses of eth0'], []);
    expect(classifyError(rollback)).toMatchObject({ code: 'VCNET_ROLLBACK_INCOMPLETE', errno: undefined });
    expect(outward(rollback)).toEqual({
      exit: ExitCode.FAILED,
      cni: CniErrorCode.ATTACH_FAILED,
      agent: StatusCode.INTERNAL,
    });
    // Wrapped again (a CLI or a caller's error): still the rollback that decides.
    expect(classifyError(new Error('attach failed', { cause: rollback })).code).toBe('VCNET_ROLLBACK_INCOMPLETE');
  });

  it('retells a refused rollback for the command that ran, keeping what is left and the cause', () => {
    const cause = new Error('injected');
    const rollback = new RollbackIncompleteError('attach', cause, ['EACCES'], ['addresses of eth1'], [{ step: 'x' }]);
    expect(rollback.hint).toContain('vcnet detach');
    const told = rollback.retold('add-iface eth1', 'vcnet gc --netns /run/netns/p finishes this interface only');
    expect(told).toBeInstanceOf(RollbackIncompleteError);
    expect(told.message).toBe(
      'add-iface eth1 failed: injected; undoing it failed too (EACCES): left addresses of eth1',
    );
    expect(told).toMatchObject({
      code: 'VCNET_ROLLBACK_INCOMPLETE',
      hint: 'vcnet gc --netns /run/netns/p finishes this interface only',
      left: [{ step: 'x' }],
      value: ['addresses of eth1'],
      cause,
    });
  });

  it('says what to do about the cause after what finishes what is left, and keeps it when retold', () => {
    const refused = new AttachError('eth0', new Error('filter refused'), true, 'use the macvtap model');
    const rollback = new RollbackIncompleteError('attach', refused, ['ENOBUFS'], ['tun tap0_kata'], []);
    expect(rollback.hint).toBe(
      'the sandbox record keeps what is left: run `vcnet detach` (or `vcnet gc`) once the cause is fixed; the cause: use the macvtap model',
    );
    const told = rollback.retold('ADD of eth0', "the runtime's DEL removes it");
    expect(told.hint).toBe("the runtime's DEL removes it; the cause: use the macvtap model");
    // An endpoint that knows better than the cause's hint replaces it, and the rest stays.
    const explained = told.withCauseHint('attach it without rx_rate_limiter_max_rate');
    expect(explained.message).toBe(told.message);
    expect(explained.hint).toBe("the runtime's DEL removes it; the cause: attach it without rx_rate_limiter_max_rate");
  });

  it("does not call the kernel's EACCES for IPv6 turned off on a link a permission problem", () => {
    const ipv6Off = new NetlinkError(
      { type: 20, description: 'add address fd00::2/64 to eth0' },
      { errno: 13, requestType: 20, requestSequence: 7, kernelMessage: 'ipv6: IPv6 is disabled on this device' },
      '/run/netns/pod',
    );
    expect(classifyError(ipv6Off)).toMatchObject({ code: 'VCNET_NETLINK', exit: 'FAILED' });
    expect(ipv6Off.hint).toMatch(/IPv6 is turned off on this link/);
    expect(ipv6Off.hint).not.toMatch(/root|security module/);
    // A bare EACCES stays "not permitted".
    expect(classifyError(netlinkError(13)).exit).toBe('NOT_PERMITTED');
  });

  it('lets a wrapper decide when its cause is only a general failure', () => {
    expect(outward(new AttachError('eth0', netlinkError(95), true))).toEqual({
      exit: ExitCode.FAILED,
      cni: CniErrorCode.ATTACH_FAILED,
      agent: StatusCode.INTERNAL,
    });
    expect(classifyError(new AttachError('eth0', netlinkError(95), true)).code).toBe('VCNET_ATTACH_FAILED');
  });

  it('lets a specific cause decide over a wrapper', () => {
    const bridge = new UnsupportedInterfaceError('VCNET_UNSUPPORTED_INTERFACE', 'br0: bridge', 'br0', 'remove it');
    expect(outward(new AttachError('br0', bridge, true))).toEqual({
      exit: ExitCode.FAILED,
      cni: CniErrorCode.UNSUPPORTED_INTERFACE,
      agent: StatusCode.FAILED_PRECONDITION,
    });
    const missing = new GuestLinkNotFoundError('interface.hwAddr', '02:00:00:00:00:01', 'with the MAC address');
    const apply = new NetworkApplyError('UpdateInterface', 'set address', missing, []);
    expect(agentStatusOf(apply).code).toBe(StatusCode.NOT_FOUND);
    expect(outward(new Error('while parsing', { cause: new InvalidInputError('mtu', 1, 'a number') }))).toEqual({
      exit: ExitCode.BAD_INPUT,
      cni: CniErrorCode.INVALID_NETWORK_CONFIG,
      agent: StatusCode.INVALID_ARGUMENT,
    });
  });

  it('maps a lock, a plain bug, and a code from a newer vcnet', () => {
    // A dump the namespace kept interrupting: the runtime should retry, however it is wrapped.
    const interrupted = new DumpInterruptedError({ type: 18, description: 'list links' }, 5, '/run/netns/busy');
    expect(interrupted).toMatchObject({ code: 'VCNET_NETLINK_DUMP_INTERRUPTED', errno: 'EINTR' });
    expect(outward(new AttachError('eth0', interrupted, true))).toEqual({
      exit: ExitCode.FAILED,
      cni: CniErrorCode.TRY_AGAIN_LATER,
      agent: StatusCode.UNAVAILABLE,
    });
    expect(outward(new SandboxLockedError('sb', 42))).toEqual({
      exit: ExitCode.LOCKED,
      cni: CniErrorCode.TRY_AGAIN_LATER,
      agent: StatusCode.ABORTED,
    });
    expect(outward(new TypeError('x is undefined'))).toEqual({
      exit: ExitCode.FAILED,
      cni: CniErrorCode.INTERNAL,
      agent: StatusCode.INTERNAL,
    });
    expect(outward(new VcnetError('VCNET_FROM_THE_FUTURE' as ErrorCode, 'x'))).toEqual({
      exit: ExitCode.FAILED,
      cni: CniErrorCode.VCNET_FAILED,
      agent: StatusCode.INTERNAL,
    });
  });

  it('gives every registry code the outward codes its row names', () => {
    for (const [code, info] of Object.entries(ErrorCodes) as Array<[ErrorCode, (typeof ErrorCodes)[ErrorCode]]>) {
      const error = new VcnetError(code, code);
      expect(outward(error), code).toEqual({
        exit: ExitCode[info.exit],
        cni: CniErrorCode[info.cni],
        agent: StatusCode[info.agent],
      });
    }
  });
});

function sources(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('isTransientFailure', () => {
  it("takes the kernel's refusals for now as transient, its refusals of what was asked as not", () => {
    // EBUSY 16, ENOBUFS 105, EAGAIN 11, EINTR 4; EINVAL 22, EOPNOTSUPP 95, ENOENT 2, EPERM 1.
    for (const errno of [16, 105, 11, 4]) expect(isTransientFailure(netlinkError(errno))).toBe(true);
    for (const errno of [22, 95, 2, 1]) expect(isTransientFailure(netlinkError(errno))).toBe(false);
    // The first errno in the chain decides, through a wrapper.
    const wrapped = new VcnetError('VCNET_ATTACH_FAILED', 'repair failed', { cause: netlinkError(22) });
    expect(isTransientFailure(wrapped)).toBe(false);
    expect(isTransientFailure(new Error('no answer from the kernel'))).toBe(true);
  });
});

describe('the registry', () => {
  const documentation = readFileSync(join(root, 'docs', 'troubleshooting.md'), 'utf8');

  it('and docs/troubleshooting.md list the same codes', () => {
    const documented = new Set([...documentation.matchAll(/^\| `(VCNET_[A-Z0-9_]+)` \|/gm)].map((match) => match[1]!));
    expect([...documented].sort()).toEqual(Object.keys(ErrorCodes).sort());
  });

  it("and the docs' outward table agree, row by row", () => {
    const rows = new Map(
      [...documentation.matchAll(/^\| `([A-Z0-9_]+)` \| (\d+) \| (\d+) \| ([A-Z_]+) \|$/gm)].map((match) => [
        match[1]!,
        [Number(match[2]), Number(match[3]), match[4]],
      ]),
    );
    const expected = [...Object.entries(ErrorCodes), ...Object.entries(ErrnoOutcomes)].map(
      ([code, info]) => [code, [ExitCode[info.exit], CniErrorCode[info.cni], info.agent]] as const,
    );
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(expected));
  });

  it('maps every row the same through the CLI exit, the CNI code and the agent status, however its error is wrapped', () => {
    for (const [code, info] of Object.entries(ErrorCodes) as Array<[ErrorCode, (typeof ErrorCodes)[ErrorCode]]>) {
      const expected = { exit: ExitCode[info.exit], cni: CniErrorCode[info.cni], agent: StatusCode[info.agent] };
      const error = new VcnetError(code, code);
      // Wrappers that are not vcnet's own never decide: the classifier follows `cause` to the row.
      const chains: unknown[] = [
        error,
        new Error('outer', { cause: error }),
        new Error('outer', { cause: new TypeError('middle', { cause: error }) }),
      ];
      // A general wrapper decides only when nothing specific is under it.
      if (info.role === 'specific') chains.push(new VcnetError('VCNET_ATTACH_FAILED', 'outer', { cause: error }));
      for (const chain of chains) expect(outward(chain), code).toEqual(expected);
      // A CniError of the row carries the CNI code the plugin reports for it: the row's, derived, not given.
      const cniError = new CniError(code, code);
      expect(cniError.cniCode, code).toBe(expected.cni);
      expect(cniErrorReply(new Error('outer', { cause: cniError }), '1.0.0').code, code).toBe(expected.cni);
    }
  });

  it("gives a CniError the CNI code the classifier finds in its cause chain, as the plugin's reply does", () => {
    const denied = Object.assign(new Error('operation not permitted'), { errno: 'EPERM' });
    const error = new CniError('VCNET_CNI_CHECK_FAILED', 'check failed', { cause: denied });
    expect(error.cniCode).toBe(CniErrorCode.NOT_PERMITTED);
    expect(cniErrorReply(error, '1.0.0').code).toBe(error.cniCode);
    expect(new CniError('VCNET_CNI_DECODE', 'not JSON').cniCode).toBe(CniErrorCode.DECODING_FAILURE);
  });

  it('knows every code a source file uses', () => {
    const used = new Set<string>();
    // An environment variable the source reads (process.env.X, or env.X of an environment passed in)
    // is a field name where it is quoted, as in `InvalidInputError('VCNET_LOCK_TIMEOUT', …)`, not an
    // error code.
    const environmentVariables = new Set(
      sources(join(root, 'src')).flatMap((file) =>
        [...readFileSync(file, 'utf8').matchAll(/\benv\.(VCNET_[A-Z0-9_]+)/g)].map((match) => match[1]!),
      ),
    );
    expect(environmentVariables).toContain('VCNET_LOCK_TIMEOUT');
    for (const file of sources(join(root, 'src')).filter((path) => !path.endsWith('src/error-codes.ts'))) {
      // (`cni: 'VCNET_FAILED'` names a CNI code, not an error code.)
      for (const match of readFileSync(file, 'utf8').matchAll(/(?<!cni: )'(VCNET_[A-Z0-9_]+)'/g))
        if (!environmentVariables.has(match[1]!)) used.add(match[1]!);
    }
    expect([...used].filter((code) => !Object.hasOwn(ErrorCodes, code))).toEqual([]);
  });
});

describe('InvalidInputError shows the refused value as the caller wrote it', () => {
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  const cases: Array<[unknown, string]> = [
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [Number.NEGATIVE_INFINITY, '-Infinity'],
    [-0, '-0'],
    [undefined, 'not given'],
    [null, 'null'],
    [10n, '10n'],
    [Symbol('s'), 'Symbol(s)'],
    [function named() {}, 'a function (named)'],
    ['5', '"5"'],
    [{ a: [1, 2] }, '{"a":[1,2]}'],
    [{ big: 1n }, '{ big: 1n }'],
    [cycle, '<ref *1> { a: 1, self: [Circular *1] }'],
  ];
  for (const [value, shown] of cases) {
    it(`${shown}`, () => {
      const error = new InvalidInputError('field', value, 'something');
      expect(error.message).toBe(`invalid field: ${shown} (accepted: something)`);
      expect(Object.is(error.value, value)).toBe(true);
    });
  }
});
