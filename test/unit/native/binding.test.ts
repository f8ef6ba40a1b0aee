/**
 * Finding the native shim: from the package root above vcnet's code, or from VCNET_PREBUILD. A vcnet
 * bundled into an application is told so (not sent to look in /build/Release), and VCNET_PREBUILD works
 * for a directory without package.json (node-gyp-build consults the variable only after reading one).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VcnetError } from '../../../src/errors.js';
import { loadNativeShim, packageRoot } from '../../../src/native/binding.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const workspace = mkdtempSync(join(tmpdir(), 'vcnet-binding-'));
afterAll(() => rmSync(workspace, { recursive: true, force: true }));

/**
 * The checkout's own build of the shim: build/Release after `npm ci` or `npm run build:native`, or
 * the prebuild `npm pack` leaves in prebuilds/ (prebuildify's rebuild takes the file out of build/).
 */
function builtShim(): string {
  const built = join(ROOT, 'build', 'Release', 'vcnet_native.node');
  if (existsSync(built)) return built;
  const prebuilds = join(ROOT, 'prebuilds', `${platform()}-${arch()}`);
  const prebuilt = existsSync(prebuilds) ? readdirSync(prebuilds).find((name) => name.endsWith('.node')) : undefined;
  if (prebuilt === undefined) throw new Error(`no native shim in ${built} or ${prebuilds}: run npm run build:native`);
  return join(prebuilds, prebuilt);
}

function failure(run: () => unknown): VcnetError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(VcnetError);
    return error as VcnetError;
  }
  throw new Error('expected a failure');
}

describe('the native shim lookup', () => {
  it('finds the package root by its binding.gyp, and none for a bundle far from any', () => {
    const bundled = join(workspace, 'app', 'dist', 'server');
    mkdirSync(bundled, { recursive: true });
    expect(packageRoot(bundled)).toBeUndefined();
    writeFileSync(join(workspace, 'app', 'binding.gyp'), '{}');
    expect(packageRoot(bundled)).toBe(join(workspace, 'app'));
    rmSync(join(workspace, 'app', 'binding.gyp'));
  });

  it('says vcnet was bundled and what to do, not that it looked in /build/Release', () => {
    const bundled = join(workspace, 'bundle');
    mkdirSync(bundled, { recursive: true });
    const error = failure(() => loadNativeShim(bundled, {}));
    expect(error.code).toBe('VCNET_NATIVE_MISSING');
    expect(error.message).toContain(bundled);
    expect(error.message).toContain('bundled');
    expect(error.message).not.toMatch(/build\/Release|prebuilds/);
    expect(error.hint).toContain('--external:vcnet');
    expect(error.hint).toContain('VCNET_PREBUILD');
  });

  it('names the VCNET_PREBUILD directory and what it lacks', () => {
    const empty = join(workspace, 'empty');
    mkdirSync(empty, { recursive: true });
    const error = failure(() => loadNativeShim(join(workspace, 'bundle'), { VCNET_PREBUILD: empty }));
    expect(error.message).toContain(`VCNET_PREBUILD=${empty}`);
    expect(error.message).toContain(join(empty, 'prebuilds', `${platform()}-${arch()}`));
    expect(error.hint).toContain('installed vcnet package directory');
  });

  it('loads from a VCNET_PREBUILD directory that has prebuilds/ and no package.json', () => {
    const prebuilt = join(workspace, 'prebuilt');
    mkdirSync(join(prebuilt, 'prebuilds', `${platform()}-${arch()}`), { recursive: true });
    copyFileSync(builtShim(), join(prebuilt, 'prebuilds', `${platform()}-${arch()}`, 'vcnet.glibc.node'));
    const shim = loadNativeShim(join(workspace, 'bundle'), { VCNET_PREBUILD: prebuilt });
    expect(typeof shim.openNetlink).toBe('function');
  });
});
