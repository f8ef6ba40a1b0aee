/**
 * Only entry points read the environment: the CLI, the CNI plugin and the guest agent's program.
 * Below them a setting comes through options, so a library caller can give it and two callers in one
 * process never share it by accident. The reads listed here are the exceptions, each with why; a new
 * `process.env` read anywhere else fails this test.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url).pathname;

/** Entry points: they turn the environment into options. */
const ENTRY_POINTS = [/^src\/cli\//, /^src\/cni\//, /^src\/agent\/guest\/main\.ts$/];

/** Reads below the entry points, by file and variable, and why each stays. */
const EXCEPTIONS: Record<string, Record<string, string>> = {
  'src/program-search.ts': {
    PATH: "the process's own program search (where ip and tc are), a default a caller can override",
  },
  'src/agent/guest/iptables.ts': { PATH: "where the guest's iptables-save/-restore are, a default of options.path" },
  'src/benchmark/iproute2-program.ts': { PATH: 'the benchmark finds ip and tc on the search path' },
  'src/demo/cni-plugin-runner.ts': {
    PATH: 'the real CNI plugins the demo runs get the search path, as a runtime gives it',
  },
  'src/demo/scenario.ts': {
    PATH: 'names where the demo looked for a program it lacks',
    VCNET_DEMO_DEBUG: 'a debugging switch of `vcnet demo`, which only the CLI runs',
  },
  'src/hypervisor/guest-image.ts': { '*': 'the environment passed on whole to the image build script it runs' },
  'src/native/binding.ts': {
    '*': 'VCNET_PREBUILD: where the native shim is, needed before any option can be read (docs/library.md)',
  },
  'src/network/state/store.ts': {
    VCNET_STATE_DIR: "the library's documented default state directory (an explicit stateDirectory wins)",
    VCNET_LOCK_TIMEOUT: "the library's documented default lock wait (lockTimeoutMs wins)",
  },
  'src/hypervisor/qmp.ts': {
    VCNET_QMP_CONNECT_TIMEOUT:
      "the library's documented default QMP handshake wait, as VCNET_LOCK_TIMEOUT is the lock's (QmpClient.connect's timeoutMs wins)",
  },
  'src/network/state/owners.ts': { VCNET_STATE_DIR: 'the default state directory, as store.ts reads it' },
  'src/network/state/registry.ts': { VCNET_STATE_REGISTRY: "the library's documented registry file (docs/library.md)" },
};

function sources(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('the environment', () => {
  it('is read only by the entry points, and by the listed exceptions for the listed reasons', () => {
    const unlisted: string[] = [];
    for (const path of sources(join(root, 'src'))) {
      const file = relative(root, path);
      if (ENTRY_POINTS.some((pattern) => pattern.test(file))) continue;
      const text = readFileSync(path, 'utf8');
      for (const match of text.matchAll(/process\.env(?:\.([A-Z_][A-Z0-9_]*))?/g)) {
        const variable = match[1] ?? '*';
        const allowed = EXCEPTIONS[file];
        if (allowed?.[variable] === undefined && allowed?.['*'] === undefined) unlisted.push(`${file}: ${match[0]}`);
      }
    }
    expect(unlisted).toEqual([]);
  });
});
