/** Builds dist/ once per test run, so CLI tests exercise the real `vcnet` binary. */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
