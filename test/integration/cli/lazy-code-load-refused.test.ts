/**
 * A command whose own code is loaded when it runs (`vcnet watch`, the kata-network commands: a chunk
 * of dist/chunks/) in a process at its open-file limit: opening that chunk fails with EMFILE
 * (injected with strace on that file alone). The command fails as vcnet's errors do (VCNET_SYSCALL,
 * errno EMFILE, the hint to raise the limit), where it printed Node's bare "EMFILE: too many open
 * files, open '...'" with no code or hint.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { runUnderStrace, straceFaultsSkipReason } from '../../helpers/strace.js';

const CHUNKS = fileURLToPath(new URL('../../../dist/chunks/', import.meta.url));
const stateDirectory = stateDirectoryPerTest('vcnet-lazy-load-');
const skipReason = straceFaultsSkipReason('lazy code load fault tests');

/** The chunk the bundle made of `module` (its name, then esbuild's hash). */
function chunkOf(module: string): string {
  const name = readdirSync(CHUNKS).find((entry) => entry.startsWith(`${module}-`) && entry.endsWith('.js'));
  if (!name) throw new Error(`no chunk ${module}-*.js in ${CHUNKS}: run npm run build`);
  return join(CHUNKS, name);
}

describe.skipIf(skipReason)('a command whose code cannot be opened (EMFILE)', () => {
  for (const [command, module, args] of [
    ['`vcnet watch`', 'sandbox-watch', ['watch', '--sandbox', 'none']],
    ['the kata-network commands (add-iface, list-ifaces...)', 'sandbox-interfaces', ['list-ifaces', 'none']],
  ] as const) {
    it(`${command}: VCNET_SYSCALL, errno EMFILE, the hint to raise ulimit -n; no stack`, () => {
      const chunk = chunkOf(module);
      const result = runUnderStrace(
        ['-P', chunk, '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE'],
        [process.execPath, CLI, ...args, '--json', '--state-dir', stateDirectory()],
        { env: { ...process.env, VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry') } },
      );
      expect(result.stderr).not.toContain('    at ');
      expect(result.status).toBe(1);
      const { error } = JSON.parse(result.stdout) as {
        error: { code: string; errno: string; message: string; hint: string };
      };
      expect(error).toMatchObject({ code: 'VCNET_SYSCALL', errno: 'EMFILE' });
      expect(error.message).toBe(`load the code of ${command} failed: EMFILE: too many open files, open '${chunk}'`);
      expect(error.hint).toMatch(/^this process has as many files open as its limit allows: raise it \(ulimit -n/);
    });
  }
});
