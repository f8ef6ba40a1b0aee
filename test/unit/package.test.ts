/**
 * The package as users see it: `import { NetlinkHandle } from 'vcnet'` resolves (package
 * self-reference to dist/ after the build the test run starts with), and the API reference builds.
 */
import { execFile, execFileSync } from 'node:child_process';
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

  it('exports the netlink codec under vcnet/netlink, and keeps it out of the main entry', () => {
    const output = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const netlink = await import('vcnet/netlink');
         const main = await import('vcnet');
         console.log(typeof netlink.encodeNewLink, netlink.LinkAttribute.IFNAME, typeof netlink.MessageWriter,
           netlink.NetlinkHandle === main.NetlinkHandle, 'encodeNewLink' in main, 'LinkAttribute' in main, 'TC_H_INGRESS' in main);`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(output.trim()).toBe('function 3 function true false false false');
  });

  it('loads neither pino nor OpenTelemetry for the library entry (the CLI subscribers do)', () => {
    // Both are CommonJS packages, so whatever loads them shows in the CommonJS module cache.
    const output = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module';
         const cache = createRequire(import.meta.url).cache;
         const heavy = () => Object.keys(cache).filter((path) => /node_modules\\/(pino|pino-pretty|@opentelemetry)\\//.test(path)).length;
         await import('vcnet');
         const library = heavy();
         const { configureLogger } = await import('./dist/cli/observability/logger.js');
         await import('./dist/cli/observability/tracing.js');
         // The CLI's logger loads pino when it is first used (child() makes it without writing a line).
         configureLogger({ level: 'warn', format: 'json' }).child({});
         console.log(library, heavy() > 0);`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    // The second number proves the check sees them when they are loaded.
    expect(output.trim()).toBe('0 true');
  });

  it('builds its API reference with typedoc without errors', async () => {
    // typedoc reports on stderr and exits non-zero when it finds errors. Run asynchronously: a worker
    // blocked for a minute on a loaded machine misses vitest's own RPC deadline.
    const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'npx',
        ['typedoc', '--emit', 'none', 'src/index.ts', 'src/netlink/index.ts'],
        { cwd: root, encoding: 'utf8' },
        (error, stdout, stderr) => resolve({ status: error ? ((error.code as number) ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(result.status, result.stderr).toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/Found 0 errors/);
    // A budget for a loaded machine: typedoc type-checks the whole API, 19 s on a quiet run and 2 min 23 s
    // at a load of 13-16 on 2 cores (session 28), where 120 s failed it.
  }, 300_000);
});
