/**
 * Builds dist/ once per test run (`npm run build`: tsc, then the bundled programs), so CLI and CNI tests
 * exercise the real `vcnet` and `vcnet-cni` files users run, and points vcnet's
 * registry of state directories at a file of this run (inherited by the test workers and every CLI
 * they start): the tests' temporary state directories never land in the host's /run/vcnet registry.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
  const registryDirectory = mkdtempSync(join(tmpdir(), 'vcnet-test-registry-'));
  process.env.VCNET_STATE_REGISTRY ??= join(registryDirectory, 'state-directories');
  return () => rmSync(registryDirectory, { recursive: true, force: true });
}
