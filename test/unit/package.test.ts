/**
 * The package as users see it: `import { NetlinkHandle } from 'vcnet'` resolves (package
 * self-reference to dist/ after the build the test run starts with), and the API reference builds.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url).pathname;

describe('the vcnet package', () => {
  it('exports the library entry under the package name', () => {
    const output = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('vcnet'); console.log(typeof m.NetlinkHandle.open, typeof m.Network.open, typeof m.generateGuestNetwork)",
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(output.trim()).toBe('function function function');
  });

  it('builds its API reference with typedoc without errors', () => {
    // typedoc reports on stderr and exits non-zero when it finds errors.
    const result = spawnSync('npx', ['typedoc', '--emit', 'none', 'src/index.ts'], { cwd: root, encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/Found 0 errors/);
  }, 120_000);
});
