/**
 * The CLI's --json error object: `code` and `name` are the deciding error's (the one a program matches
 * on), and the wrapper that carried it is `outerCode` and `outerName`.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { reportError } from '../../../src/cli/program.js';
import { DetachIncompleteError, InvalidInputError, SystemCallError } from '../../../src/errors.js';
import { AttachError } from '../../../src/network/model/plumbing-context.js';
import { LinkNameTakenError } from '../../../src/network/plan/plan-attach.js';

function jsonOf(error: unknown): Record<string, unknown> {
  const out: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  reportError(error, true);
  vi.restoreAllMocks();
  return JSON.parse(out.join('')).error;
}

describe('--json errors', () => {
  afterEach(() => vi.restoreAllMocks());

  it("names the deciding error, with the wrapper's name and code beside it", () => {
    const taken = new LinkNameTakenError('tap0_kata', { index: 7, kind: 'tun', group: 0 });
    const body = jsonOf(new AttachError('eth0', taken, true));
    expect(body).toMatchObject({
      name: 'LinkNameTakenError',
      code: 'VCNET_LINK_NAME_TAKEN',
      outerName: 'AttachError',
      outerCode: 'VCNET_ATTACH_FAILED',
    });
  });

  it("carries the deciding error's errno when a wrapper without one failed", () => {
    const refused = Object.assign(new Error('Operation not permitted'), { code: 'EPERM', syscall: 'ioctl' });
    const attach = jsonOf(new AttachError('eth0', new SystemCallError('create tap tap0_kata', refused), false));
    expect(attach).toMatchObject({ code: 'VCNET_SYSCALL', errno: 'EPERM', outerCode: 'VCNET_ATTACH_FAILED' });
    const netlinkRefusal = Object.assign(new Error('delete tun tap0_kata failed: EPERM'), { errno: 'EPERM' });
    const detach = jsonOf(
      new DetachIncompleteError('detach of s1', ['refused'], ['tun tap0_kata'], '/tmp/s1/state.json', undefined, [
        netlinkRefusal,
      ]),
    );
    expect(detach).toMatchObject({ errno: 'EPERM', outerCode: 'VCNET_DETACH_INCOMPLETE' });
  });

  it('has no errno when none decided', () => {
    expect(jsonOf(new InvalidInputError('queues', 0, 'an integer from 1 to 256'))).not.toHaveProperty('errno');
  });

  it('has no outer fields when the error decides itself', () => {
    const body = jsonOf(new InvalidInputError('queues', 0, 'an integer from 1 to 256'));
    expect(body).toMatchObject({ name: 'InvalidInputError', code: 'VCNET_INVALID_INPUT' });
    expect(body).not.toHaveProperty('outerName');
    expect(body).not.toHaveProperty('outerCode');
  });

  it('names an error that is no vcnet error by its own class, as every other error object has a name', () => {
    expect(jsonOf(new TypeError('x is not a function'))).toEqual({
      name: 'TypeError',
      code: 'VCNET_ERROR',
      message: 'x is not a function',
    });
    expect(jsonOf('a thrown string')).toEqual({ name: 'Error', code: 'VCNET_ERROR', message: 'a thrown string' });
  });
});
