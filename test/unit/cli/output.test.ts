/**
 * Table text for people: a default route reads "default" whichever way its `dest` is spelled.
 */
import { describe, expect, it } from 'vitest';
import { routeDestination } from '../../../src/cli/output.js';

describe('routeDestination', () => {
  it('shows a default route as "default" in each spelling (Kata 1.x "", current Kata 0.0.0.0/0 and ::/0)', () => {
    expect(['', '0.0.0.0/0', '::/0'].map(routeDestination)).toEqual(['default', 'default', 'default']);
  });

  it('shows any other destination as it is', () => {
    expect(['10.0.0.0/8', 'fd00::/64', '0.0.0.0/1'].map(routeDestination)).toEqual([
      '10.0.0.0/8',
      'fd00::/64',
      '0.0.0.0/1',
    ]);
  });
});
