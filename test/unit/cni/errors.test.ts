import { describe, expect, it } from 'vitest';
import {
  CniConfigError,
  CniEnvironmentError,
  CniErrorCode,
  cniCodeFor,
  cniErrorReply,
} from '../../../src/cni/errors.js';
import { openFileLimitHint } from '../../../src/cni/file-limit.js';
import { hintForErrno, RollbackIncompleteError, SystemCallError, VcnetError } from '../../../src/errors.js';
import { UnsupportedInterfaceError } from '../../../src/network/endpoint/create-endpoint.js';
import { AttachError } from '../../../src/network/model/plumbing-context.js';
import { SandboxLockedError } from '../../../src/network/state/store.js';

describe('CNI error replies', () => {
  it('are the spec object: cniVersion, code, msg, and details carrying the VCNET code and hint', () => {
    const reply = cniErrorReply(new CniConfigError('model', 'fast', 'expected one of a, b'), '0.4.0');
    expect(reply).toEqual({
      cniVersion: '0.4.0',
      code: 7,
      msg: 'invalid network config: model: expected one of a, b (got "fast")',
      details: 'VCNET_CNI_CONFIG: fix "model" in the network configuration (conflist) of this plugin',
    });
    expect(Object.keys(JSON.parse(JSON.stringify(reply)))).toEqual(['cniVersion', 'code', 'msg', 'details']);
  });

  it('map vcnet errors to the spec codes and to vcnet codes from 100', () => {
    expect(cniCodeFor(new SandboxLockedError('ctr', 42))).toBe(CniErrorCode.TRY_AGAIN_LATER);
    const unsupported = new UnsupportedInterfaceError('VCNET_UNSUPPORTED_INTERFACE', 'br0: bridge', 'br0', 'hint');
    expect(cniCodeFor(new AttachError('br0', unsupported, true))).toBe(CniErrorCode.UNSUPPORTED_INTERFACE);
    expect(cniCodeFor(new AttachError('eth0', new Error('EEXIST'), true))).toBe(CniErrorCode.ATTACH_FAILED);
    const denied = Object.assign(new Error('operation not permitted'), { errno: 'EPERM' });
    expect(cniCodeFor(new AttachError('eth0', denied, true))).toBe(CniErrorCode.NOT_PERMITTED);
    expect(cniCodeFor(new VcnetError('VCNET_DETACH_INCOMPLETE', 'left 1'))).toBe(CniErrorCode.DETACH_INCOMPLETE);
    expect(cniCodeFor(new VcnetError('VCNET_STATE_INVALID', 'bad json'))).toBe(CniErrorCode.STATE_INVALID);
    expect(cniCodeFor(new VcnetError('VCNET_INVALID_INPUT', 'queues'))).toBe(CniErrorCode.INVALID_NETWORK_CONFIG);
    // A code this version does not know (an error from a newer copy of vcnet): a general failure.
    expect(cniCodeFor(new VcnetError('VCNET_SOMETHING_ELSE' as never, 'x'))).toBe(CniErrorCode.VCNET_FAILED);
  });

  it("carry the errno that decided and the outer code in details, after the deciding code, as the CLI's --json does", () => {
    const denied = Object.assign(new Error('operation not permitted'), { errno: 'EPERM' });
    const attach = cniErrorReply(new AttachError('eth0', denied, true), '1.0.0');
    expect(attach.details).toMatch(/^VCNET_ERROR \(errno EPERM, outerCode VCNET_ATTACH_FAILED\): /);
    const rollback = new RollbackIncompleteError('attach', new AttachError('eth0', denied, true), ['x'], ['y'], []);
    const reply = cniErrorReply(rollback, '1.0.0');
    expect(reply.code).toBe(CniErrorCode.ATTACH_FAILED);
    expect(reply.details).toMatch(/^VCNET_ROLLBACK_INCOMPLETE: /);
  });

  it("word an EMFILE's hint for a runtime: the plugin's open-file limit, what it needs, LimitNOFILE= of containerd", () => {
    const emfile = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE', syscall: 'socket' });
    const socket = new SystemCallError('open a netlink socket', emfile);
    expect(socket.hint).toBe(hintForErrno('EMFILE'));
    const limit = { soft: 40, hard: 40 };
    const reply = cniErrorReply(new AttachError('eth0', socket, true), '1.0.0', { openFileLimit: limit });
    expect(reply.details).toBe(`VCNET_ATTACH_FAILED: ${openFileLimitHint(limit)}`);
    expect(reply.details).toContain('the open-file limit of vcnet-cni is 40 (hard limit 40); it needs 64');
    expect(reply.details).toContain('raise LimitNOFILE= of the container runtime');
    // Another errno's hint, and a hint of the error's own, stay as they are.
    const full = Object.assign(new Error('ENOSPC'), { code: 'ENOSPC', syscall: 'write' });
    expect(cniErrorReply(new SystemCallError('write', full), '1.0.0', { openFileLimit: limit }).details).toBe(
      `VCNET_SYSCALL (errno ENOSPC): ${hintForErrno('ENOSPC')}`,
    );
    const own = new VcnetError('VCNET_STATE_WRITE', 'could not write', { cause: emfile, hint: 'free the registry' });
    expect(cniErrorReply(own, '1.0.0', { openFileLimit: limit }).details).toMatch(/: free the registry$/);
  });

  it('report an error that is not a VcnetError as internal (999), with the stack for a bug report', () => {
    const reply = cniErrorReply(new TypeError('x is undefined'), '1.0.0');
    expect(reply.code).toBe(999);
    expect(reply.msg).toBe('x is undefined');
    expect(reply.details).toMatch(/^internal error in vcnet-cni, please report it: TypeError: x is undefined/);
  });

  it('keep every vcnet-specific code at 100 or above (1-99 belong to the spec)', () => {
    const spec = new Set([1, 2, 3, 4, 5, 6, 7, 11, 50]);
    for (const code of Object.values(CniErrorCode)) expect(spec.has(code) || code >= 100).toBe(true);
  });
});

describe('a CNI_* variable', () => {
  it('missing: the hint says to export it; set but invalid: the hint says its value is invalid, not to export it', () => {
    expect(new CniEnvironmentError('CNI_IFNAME', undefined, 'a link name').hint).toContain('export it');
    const invalid = new CniEnvironmentError('CNI_IFNAME', 'a/b', 'a link name');
    expect(invalid.hint).toBe(
      'CNI_IFNAME is set, but its value is invalid: fix what sets it (the container runtime, or your shell when running by hand)',
    );
    expect(invalid.hint).not.toContain('export it');
  });
});
