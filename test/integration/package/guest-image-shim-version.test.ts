/**
 * scripts/guest-image refuses a native shim whose interface version is not the one the agent it
 * bundles needs: such a guest's agent exits at boot, and the host only saw configure-guest time out
 * after 60 s ("is the guest booted and the agent running"), nothing naming the stale build/Release.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { NATIVE_INTERFACE_VERSION } from '../../../src/native/binding.js';

const repository = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(repository, 'scripts/guest-image');
const addon = join(repository, 'build/Release/vcnet_native.node');
const scratch = mkdtempSync(join(tmpdir(), 'vcnet-guest-image-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.skipIf(!existsSync(addon))('guest-image and the native shim', () => {
  it('refuses an agent that needs another interface version than build/Release has, naming both and the fix', () => {
    const other = NATIVE_INTERFACE_VERSION + 97;
    const agent = join(scratch, 'agent.ts');
    writeFileSync(agent, `export const NATIVE_INTERFACE_VERSION = ${other};\nconsole.log(NATIVE_INTERFACE_VERSION);\n`);
    const output = join(scratch, 'guest');
    const run = spawnSync(script, [], {
      env: { ...process.env, VCNET_GUEST_DIR: output, VCNET_GUEST_AGENT_SOURCE: agent },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toContain(
      `build/Release/vcnet_native.node is the native shim's interface version ${NATIVE_INTERFACE_VERSION}, and the agent bundled from ${agent} needs version ${other}`,
    );
    expect(run.stderr).toContain('`npm run build:native`');
    expect(existsSync(join(output, 'initramfs.cpio.gz'))).toBe(false);
  });
});
