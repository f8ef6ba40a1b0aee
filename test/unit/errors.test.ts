import { describe, expect, it } from 'vitest';
import { InvalidInputError, VcnetError } from '../../src/errors.js';

describe('errors', () => {
  it('InvalidInputError names the field, the value and what is accepted', () => {
    const error = new InvalidInputError('mtu', 20, 'an integer from 68 to 65535');
    expect(error).toBeInstanceOf(VcnetError);
    expect(error.code).toBe('VCNET_INVALID_INPUT');
    expect(error.message).toContain('mtu');
    expect(error.message).toContain('20');
    expect(error.message).toContain('68 to 65535');
    expect(error.toJSON()).toMatchObject({ code: 'VCNET_INVALID_INPUT', value: 20 });
  });
});
