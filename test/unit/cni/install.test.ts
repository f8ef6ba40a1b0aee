import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFLIST_OPTIONS, installCni, launcherScript, vcnetConflist } from '../../../src/cni/install.js';
import type { VcnetError } from '../../../src/errors.js';

let directory: string;
let entry: string;
beforeEach(() => {
  // A directory name a shell would split or unquote: the launcher must quote it.
  directory = join(mkdtempSync(join(tmpdir(), 'vcnet-install-')), "it's a dir");
  mkdirSync(directory, { recursive: true });
  entry = join(directory, 'main.js');
  writeFileSync(
    entry,
    'process.stdout.write(JSON.stringify({ argv: process.argv.slice(2), command: process.env.CNI_COMMAND }));',
  );
});
afterEach(() => rmSync(join(directory, '..'), { recursive: true, force: true }));

describe('installCni', () => {
  it('writes an executable launcher and a conflist once; a second run changes nothing', () => {
    const options = {
      binDirectory: join(directory, 'bin'),
      confDirectory: join(directory, 'net.d'),
      entryPath: entry,
      conflistFile: '99-vcnet.conflist',
    };
    expect(installCni(options).map((file) => file.changed)).toEqual([true, true]);
    const plugin = join(directory, 'bin', 'vcnet-cni');
    expect(statSync(plugin).mode & 0o777).toBe(0o755);
    expect(installCni(options).map((file) => file.changed)).toEqual([false, false]);
    const conflist = JSON.parse(readFileSync(join(directory, 'net.d', '99-vcnet.conflist'), 'utf8'));
    expect(conflist).toEqual(vcnetConflist(DEFAULT_CONFLIST_OPTIONS));
    expect(conflist.plugins.map((plugin: { type: string }) => plugin.type)).toEqual(['bridge', 'vcnet-cni']);

    // It runs the recorded node on the recorded entry, with no PATH at all.
    const run = spawnSync(plugin, ['x y'], { encoding: 'utf8', env: { CNI_COMMAND: 'VERSION' } });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ argv: ['x y'], command: 'VERSION' });
  });

  it('replaces a launcher that points elsewhere (after vcnet moved)', () => {
    const options = { binDirectory: join(directory, 'bin'), confDirectory: join(directory, 'net.d'), entryPath: entry };
    installCni(options);
    const plugin = join(directory, 'bin', 'vcnet-cni');
    writeFileSync(plugin, launcherScript('/old/node', '/old/main.js'));
    expect(installCni(options)).toEqual([{ path: plugin, changed: true }]);
    expect(readFileSync(plugin, 'utf8')).toBe(launcherScript(process.execPath, entry));
  });

  it('refuses bad input naming the field, before writing anything', () => {
    const base = { binDirectory: join(directory, 'bin'), confDirectory: join(directory, 'net.d'), entryPath: entry };
    const refusal = (run: () => unknown) => {
      try {
        run();
      } catch (error) {
        return error as VcnetError;
      }
      throw new Error('expected a refusal');
    };
    expect(refusal(() => installCni({ ...base, binDirectory: 'relative' })).message).toContain('invalid bin-dir');
    expect(
      refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet: '10.0.0.0' } })).message,
    ).toBe('invalid subnet: "10.0.0.0" (accepted: an IPv4 or IPv6 CIDR such as 10.89.0.0/16)');
    const notBuilt = refusal(() => installCni({ ...base, entryPath: join(directory, 'missing.js') }));
    expect(notBuilt.code).toBe('VCNET_CNI_NOT_BUILT');
    expect(() => statSync(join(directory, 'bin'))).toThrow();
  });
});
