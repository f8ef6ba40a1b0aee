/**
 * A logged error says its message once: pino's default `err` serializer appends each cause's message
 * to the error's own, and vcnet's messages already hold their cause's, so a watch on a read-only state
 * directory logged "open lock file X failed: EROFS: ...: EROFS: ...". The logger writes to fd 2, so the
 * line is read from a child process.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const LOGGER = fileURLToPath(new URL('../../../src/cli/observability/logger.ts', import.meta.url));
const ERRORS = fileURLToPath(new URL('../../../src/errors.ts', import.meta.url));

describe('a JSON log line with an error', () => {
  it('keeps the message as it is and gives the cause as its own object', () => {
    const script = `
      const { configureLogger } = await import(${JSON.stringify(LOGGER)});
      const { SystemCallError } = await import(${JSON.stringify(ERRORS)});
      const cause = Object.assign(new Error("EROFS: read-only file system, open '/x/.locks/a'"), { code: 'EROFS' });
      configureLogger({ level: 'error', format: 'json' }).error({ err: new SystemCallError('open lock file /x/.locks/a', cause) }, 'failed');
    `;
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const line = JSON.parse(result.stderr.trim().split('\n').at(-1)!) as {
      err: { message: string; cause?: { message: string } };
    };
    expect(line.err.message.match(/EROFS/g)).toHaveLength(1);
    expect(line.err.message).toContain('open lock file /x/.locks/a');
    expect(line.err.cause?.message).toBe("EROFS: read-only file system, open '/x/.locks/a'");
  });
});
