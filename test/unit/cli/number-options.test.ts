/**
 * Numbers a person types into a flag or a variable: only decimal digits (and, for seconds, a
 * fraction). `Number()` alone took "0x2", "1e1", " 3" and "" (as 0), so `--queues 0x2` made a
 * two-queue tap and `--debounce ""` meant no debounce.
 */
import { describe, expect, it } from 'vitest';
import { decimalInteger, decimalSecondsAsMs } from '../../../src/arguments.js';
import { parseLockTimeout, parseQueues } from '../../../src/cli/options.js';
import { InvalidInputError } from '../../../src/errors.js';
import { defaultLockTimeoutMs } from '../../../src/network/state/store.js';

const notDecimal = ['0x2', '1e1', ' 3', '3 ', '+3', '-1', '', '1.5', '2abc', 'Infinity', '０', '1_0'];

function refusal(run: () => unknown): InvalidInputError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error('was accepted');
}

describe('numbers typed into flags and variables', () => {
  it.each(notDecimal)('--queues %j is refused, naming the flag and what is accepted', (text) => {
    const error = refusal(() => parseQueues(text));
    expect(error.message).toContain('--queues');
    expect(error.message).toContain('an integer from 1 to 256');
  });

  it('--queues takes decimal digits within its range', () => {
    expect(parseQueues('1')).toBe(1);
    expect(parseQueues('008')).toBe(8);
    expect(parseQueues('256')).toBe(256);
    refusal(() => parseQueues('0'));
    refusal(() => parseQueues('257'));
  });

  it.each(['0x10', '1e3', ' 1', '', '-1', '1s', 'NaN'])('--lock-timeout %j is refused', (text) => {
    expect(refusal(() => parseLockTimeout(text)).message).toContain('--lock-timeout');
  });

  it('--lock-timeout takes seconds with a fraction', () => {
    expect(parseLockTimeout('30')).toBe(30_000);
    expect(parseLockTimeout('0.5')).toBe(500);
    expect(parseLockTimeout('.25')).toBe(250);
    expect(parseLockTimeout('0')).toBe(0);
    refusal(() => parseLockTimeout('3600.5'));
  });

  it('VCNET_LOCK_TIMEOUT is read the same way (empty is the default)', () => {
    const saved = process.env.VCNET_LOCK_TIMEOUT;
    try {
      process.env.VCNET_LOCK_TIMEOUT = '0x10';
      expect(refusal(() => defaultLockTimeoutMs()).message).toContain('VCNET_LOCK_TIMEOUT');
      process.env.VCNET_LOCK_TIMEOUT = '1.5';
      expect(defaultLockTimeoutMs()).toBe(1500);
      process.env.VCNET_LOCK_TIMEOUT = '';
      expect(defaultLockTimeoutMs()).toBe(30_000);
    } finally {
      if (saved === undefined) delete process.env.VCNET_LOCK_TIMEOUT;
      else process.env.VCNET_LOCK_TIMEOUT = saved;
    }
  });

  it('the shared checks name the field and keep the value as typed', () => {
    const error = refusal(() => decimalInteger('--debounce', '', 0, 60_000, 'milliseconds from 0 to 60000'));
    expect(error.message).toContain('--debounce');
    expect(error.value).toBe('');
    expect(decimalInteger('--debounce', '0', 0, 60_000, 'x')).toBe(0);
    expect(refusal(() => decimalSecondsAsMs('s', '1e2', 3600, 'x')).value).toBe('1e2');
  });
});
