/**
 * JS and the native shim from different builds (new JS, an old .node during a rebuild): the shim's
 * interface version is checked when it loads, and a mismatch is one clear error naming both.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';

const addon = vi.hoisted(() => ({ exports: {} as Record<string, unknown> }));
vi.mock('node-gyp-build', () => ({ default: () => addon.exports }));

afterEach(() => {
  vi.resetModules();
});

describe('the native shim interface version', () => {
  it('is the same number in the C source and the JS that loads it', async () => {
    const source = readFileSync(new URL('../../native/vcnet_native.c', import.meta.url), 'utf8');
    const defined = /^#define VCNET_NATIVE_INTERFACE_VERSION (\d+)$/m.exec(source)?.[1];
    const { NATIVE_INTERFACE_VERSION } = await import('../../src/native/binding.js');
    expect(Number(defined)).toBe(NATIVE_INTERFACE_VERSION);
  });

  it('refuses a shim of another version, or of none, naming both and how to rebuild', async () => {
    for (const found of [undefined, 1, 3]) {
      vi.resetModules();
      addon.exports = { interfaceVersion: found, netlinkPortId: () => 1 };
      const { nativeShim, NATIVE_INTERFACE_VERSION } = await import('../../src/native/binding.js');
      let caught: (Error & { code?: string; hint?: string }) | undefined;
      try {
        nativeShim();
      } catch (error) {
        caught = error as Error & { code?: string; hint?: string };
      }
      expect(caught?.code).toBe('VCNET_NATIVE_MISSING');
      expect(caught?.message).toContain(
        `is from another build than this JS: it has interface version ${found ?? 'none'}`,
      );
      expect(caught?.message).toContain(`this JS needs ${NATIVE_INTERFACE_VERSION}`);
      expect(caught?.hint).toContain('npm run build:native');
    }
  });

  it('takes a shim of the right version', async () => {
    const { NATIVE_INTERFACE_VERSION } = await import('../../src/native/binding.js');
    vi.resetModules();
    addon.exports = { interfaceVersion: NATIVE_INTERFACE_VERSION };
    const { nativeShim } = await import('../../src/native/binding.js');
    expect(nativeShim()).toBe(addon.exports);
  });
});
