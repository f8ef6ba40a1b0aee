/**
 * JS and the native shim from different builds (new JS, an old .node during a rebuild): the shim's
 * interface version is checked when it loads, and a mismatch is one clear error naming both.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

// node-gyp-build resolves the shim's file; here it resolves to a plain module standing in for a
// .node file, so that each case can give the shim the interface version it wants.
const resolved = vi.hoisted(() => ({ file: '' }));
vi.mock('node-gyp-build', () => {
  const load = () => {
    throw new Error('not used: binding.ts requires the resolved file itself');
  };
  load.resolve = () => resolved.file;
  return { default: load };
});

const scratch = mkdtempSync(join(tmpdir(), 'vcnet-shim-version-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let made = 0;

/** A stand-in shim exporting `exports` (a new file each time: require caches by path). */
function fakeShim(exports: Record<string, unknown>): string {
  resolved.file = join(scratch, `shim-${made++}.cjs`);
  writeFileSync(resolved.file, `module.exports = ${JSON.stringify(exports)};\n`);
  return resolved.file;
}

describe('the native shim interface version', () => {
  it('is the same number in the C source and the JS that loads it', async () => {
    const source = readFileSync(new URL('../../native/vcnet_native.c', import.meta.url), 'utf8');
    const defined = /^#define VCNET_NATIVE_INTERFACE_VERSION (\d+)$/m.exec(source)?.[1];
    const { NATIVE_INTERFACE_VERSION } = await import('../../src/native/binding.js');
    expect(Number(defined)).toBe(NATIVE_INTERFACE_VERSION);
  });

  it('refuses a shim of another version, or of none, naming both and how to rebuild', async () => {
    const { loadNativeShim, NATIVE_INTERFACE_VERSION } = await import('../../src/native/binding.js');
    for (const found of [undefined, NATIVE_INTERFACE_VERSION - 1, NATIVE_INTERFACE_VERSION + 1]) {
      fakeShim(found === undefined ? {} : { interfaceVersion: found });
      let caught: (Error & { code?: string; hint?: string }) | undefined;
      try {
        loadNativeShim(scratch, { VCNET_PREBUILD: scratch });
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
    const { loadNativeShim, NATIVE_INTERFACE_VERSION } = await import('../../src/native/binding.js');
    fakeShim({ interfaceVersion: NATIVE_INTERFACE_VERSION, marker: 'this one' });
    expect(loadNativeShim(scratch, { VCNET_PREBUILD: scratch })).toMatchObject({ marker: 'this one' });
  });
});
