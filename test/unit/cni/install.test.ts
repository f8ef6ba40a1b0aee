import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MINIMUM_OPEN_FILES, openFileLimitHint } from '../../../src/cni/file-limit.js';
import {
  CANNOT_RUN_ANSWER,
  type ConflistOptions,
  DEFAULT_CONFLIST_OPTIONS,
  FILE_LIMIT_CHECK,
  installCni,
  launcherScript,
  vcnetConflist,
} from '../../../src/cni/install.js';
import type { SupportedCniVersion } from '../../../src/cni/version.js';
import type { VcnetError } from '../../../src/errors.js';
import type { InterworkingModel } from '../../../src/network/interworking-model.js';
import { vcnet } from '../../helpers/cli.js';

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

  it('takes a CIDR of either family with its prefix length in range (up to the smallest range host-local takes)', () => {
    for (const subnet of ['10.0.0.0/30', '10.89.0.0/16', 'fd00:89::/64', 'fd00::/126', '0.0.0.0/0']) {
      const options = {
        binDirectory: join(directory, 'bin'),
        confDirectory: join(directory, 'net.d'),
        entryPath: entry,
      };
      installCni({ ...options, conflistFile: '99-vcnet.conflist', conflist: { subnet } });
      const conflist = JSON.parse(readFileSync(join(directory, 'net.d', '99-vcnet.conflist'), 'utf8'));
      expect(conflist.plugins[0].ipam.ranges).toEqual([[{ subnet }]]);
      // The default route of the subnet's own family.
      expect(conflist.plugins[0].ipam.routes).toEqual([{ dst: subnet.includes(':') ? '::/0' : '0.0.0.0/0' }]);
    }
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
    expect(refusal(() => installCni({ ...base, binDirectory: 'relative' })).message).toContain('invalid --bin-dir');
    expect(
      refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet: '10.0.0.0' } })).message,
    ).toBe(
      'invalid --subnet: "10.0.0.0" (accepted: an IPv4 CIDR (prefix length 0 to 32) such as 10.89.0.0/16, or an IPv6 CIDR (prefix length 0 to 128))',
    );
    for (const subnet of ['10.0.0.0/99', '10.0.0.0/33', 'fd00::/129', '300.0.0.0/8', '10.0.0/8', '::g/64'])
      expect(
        refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet } })).message,
        subnet,
      ).toContain(`invalid --subnet: ${JSON.stringify(subnet)}`);
    // Ranges host-local refuses at every pod's ADD ("Network has host bits set", "too small to
    // allocate from"): install-cni wrote them and said "installed".
    const hostBits = refusal(() =>
      installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet: '10.89.0.1/16' } }),
    );
    expect(hostBits.message).toBe(
      'invalid --subnet: "10.89.0.1/16" (accepted: a network address with no host bits set, such as 10.89.0.0/16 (host-local refuses a range with host bits set, and every pod\'s ADD would fail))',
    );
    expect(hostBits.hint).toBe('set --subnet to 10.89.0.0/16, the network 10.89.0.1/16 is in');
    expect(
      refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet: 'fd00::1/64' } })).hint,
    ).toBe('set --subnet to fd00::/64, the network fd00::1/64 is in');
    for (const [subnet, larger] of [
      ['10.89.0.0/31', '10.89.0.0/24'],
      ['10.89.0.7/32', '10.89.0.0/24'],
      ['fd00::/127', 'fd00::/120'],
    ] as const) {
      const tooSmall = refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet } }));
      expect(tooSmall.message, subnet).toContain(
        `invalid --subnet: ${JSON.stringify(subnet)} (accepted: a range with room`,
      );
      expect(tooSmall.hint, subnet).toBe(`give a larger range, such as ${larger}`);
    }
    // An IPv4-mapped IPv6 range: host-local refuses it ("IPNet IP and Mask version mismatch"), host
    // bits or not; the hint names the IPv4 range it maps, or a /24 around it where that is too
    // small, saying which.
    for (const [subnet, ipv4] of [
      ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
      ['::ffff:10.0.0.1/120', '10.0.0.0/24'],
      ['::FFFF:a00:0/120', '10.0.0.0/24'],
    ] as const) {
      const mapped = refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet } }));
      expect(mapped.message, subnet).toBe(
        `invalid --subnet: ${JSON.stringify(subnet)} (accepted: an IPv4 range written as IPv4, or an IPv6 range outside ::ffff:0:0/96 (host-local refuses an IPv4-mapped IPv6 range, and every pod's ADD would fail))`,
      );
      expect(mapped.hint, subnet).toBe(`set --subnet to ${ipv4}, the IPv4 range of ${subnet}`);
    }
    for (const [subnet, maps] of [
      ['::ffff:10.1.2.0/127', '10.1.2.0/31'],
      ['::ffff:10.1.2.3/128', '10.1.2.3/32'],
    ] as const) {
      const mapped = refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist: { subnet } }));
      expect(mapped.hint, subnet).toBe(
        `set --subnet to an IPv4 range with room for the bridge's gateway and pods, such as 10.1.2.0/24: ${subnet} maps ${maps}, too small for host-local`,
      );
    }
    // Outside --conf-dir, or a file libcni would not read as a list.
    for (const conflistFile of [
      '../../evil.conflist',
      '/etc/cni/net.d/x.conflist',
      'a/b.conflist',
      'foo.txt',
      'x.conf',
      'x.json',
      '.conflist',
      '',
    ])
      expect(refusal(() => installCni({ ...base, conflistFile })).message, conflistFile).toContain(
        `invalid --conf-file: ${JSON.stringify(conflistFile)} (accepted: a file name ending in .conflist, without a directory`,
      );
    // Each named as the install-cni flag that sets it (it said "invalid subnet", "set cni-version to ...").
    const refused: Array<[Partial<ConflistOptions>, string]> = [
      [{ networkName: 'a b' }, '--network-name'],
      [{ bridge: 'this-name-is-too-long' }, '--bridge'],
      [{ model: 'fast' as InterworkingModel }, '--model'],
      [{ stateDirectory: 'relative' }, '--state-dir'],
      [{ cniVersion: '0.2.0' as ConflistOptions['cniVersion'] }, '--cni-version'],
    ];
    for (const [conflist, flag] of refused) {
      const error = refusal(() => installCni({ ...base, conflistFile: 'x.conflist', conflist }));
      expect(error.message).toMatch(new RegExp(`^invalid ${flag}: `));
      expect(error.hint).toMatch(new RegExp(`^set ${flag} to `));
    }
    const notBuilt = refusal(() => installCni({ ...base, entryPath: join(directory, 'missing.js') }));
    expect(notBuilt.code).toBe('VCNET_CNI_NOT_BUILT');
    expect(() => statSync(join(directory, 'bin'))).toThrow();
  });
});

describe('the conflist of the macvtap model', () => {
  it('says "disableCheck": true from cniVersion 0.4.0 (the chain\'s CHECK always fails), and install-cni says why', () => {
    const disables = (model: InterworkingModel, cniVersion: SupportedCniVersion) =>
      vcnetConflist({ ...DEFAULT_CONFLIST_OPTIONS, model, cniVersion }).disableCheck;
    for (const version of ['0.4.0', '1.0.0', '1.1.0'] as const)
      expect(disables('macvtap', version), version).toBe(true);
    // 0.3.x has no CHECK, and no disableCheck; the other models' CHECK passes.
    for (const version of ['0.3.0', '0.3.1'] as const) expect(disables('macvtap', version), version).toBeUndefined();
    for (const model of ['tcfilter', 'none'] as const) expect(disables(model, '1.0.0'), model).toBeUndefined();

    const install = (version: string) => {
      const confDirectory = join(directory, `net.d-${version}`);
      const run = vcnet([
        'install-cni',
        '--bin-dir',
        join(directory, 'bin'),
        '--conf-dir',
        confDirectory,
        '--model',
        'macvtap',
        '--cni-version',
        version,
      ]);
      expect(run.status, run.stderr).toBe(0);
      return { run, conflist: JSON.parse(readFileSync(join(confDirectory, '99-vcnet.conflist'), 'utf8')) };
    };
    const current = install('1.0.0');
    expect(current.conflist).toMatchObject({ cniVersion: '1.0.0', disableCheck: true });
    expect(current.run.stderr).toContain('the conflist has "disableCheck": true: with model macvtap the CHECK');
    const old = install('0.3.1');
    expect(old.conflist.disableCheck).toBeUndefined();
    expect(old.run.stderr).toContain('cniVersion 0.3.1 has no CHECK (nor disableCheck)');
  });
});

/** Runs a plugin script as a runtime with no usable PATH would, `input` on stdin. */
function runScript(path: string, command: string, input: string, environment: Record<string, string> = {}) {
  return spawnSync(path, [], {
    input,
    encoding: 'utf8',
    env: { CNI_COMMAND: command, PATH: '/nonexistent', ...environment },
  });
}

/** What a launcher or wrapper answers when it cannot run the plugin, for each command. */
function expectCannotRunAnswers(path: string, msg: string) {
  const del = runScript(path, 'DEL', '{"cniVersion":"0.3.1"}');
  expect(del.status).toBe(0);
  expect(del.stdout).toBe('');
  expect(del.stderr).toMatch(/^vcnet-cni: .* is missing/);
  // libcni marshals the config with sorted keys: objects before "cniVersion" do not hide it.
  const add = runScript(path, 'ADD', '{"args": {"k": "v"},\n "cniVersion" : "0.3.1", "name": "pods"}');
  expect(add.status).toBe(1);
  expect(JSON.parse(add.stdout)).toMatchObject({ cniVersion: '0.3.1', code: 5, msg });
  const status = runScript(path, 'STATUS', '{"cniVersion":"1.1.0","name":"pods"}');
  expect(JSON.parse(status.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50, msg });
  // A version vcnet-cni does not speak, or none: its preferred one.
  for (const input of ['{"cniVersion":"9.9.9"}', 'not json', '']) {
    expect(JSON.parse(runScript(path, 'CHECK', input).stdout)).toMatchObject({ cniVersion: '1.0.0', code: 5 });
  }
}

describe('when the plugin cannot run', () => {
  it("the launcher answers with shell builtins only: DEL succeeds, STATUS 50, others 5, in the config's version", () => {
    const plugin = join(directory, 'vcnet-cni');
    writeFileSync(plugin, launcherScript(process.execPath, join(directory, 'gone', 'main.js')), { mode: 0o755 });
    expectCannotRunAnswers(plugin, 'vcnet-cni is not installed completely');
  });

  it('the development wrapper runs with no PATH tools (VCNET_NODE), through a symlink, and answers as the launcher', () => {
    const wrapperSource = fileURLToPath(new URL('../../../src/cni/vcnet-cni', import.meta.url));
    expect(readFileSync(wrapperSource, 'utf8').endsWith(CANNOT_RUN_ANSWER)).toBe(true);
    expect(readFileSync(wrapperSource, 'utf8')).toContain(FILE_LIMIT_CHECK);
    // A source tree of its own: src/cni/vcnet-cni and dist/cni/main.js (the fake entry).
    const tree = join(directory, 'tree');
    mkdirSync(join(tree, 'src', 'cni'), { recursive: true });
    mkdirSync(join(tree, 'dist', 'cni'), { recursive: true });
    const wrapper = join(tree, 'src', 'cni', 'vcnet-cni');
    copyFileSync(wrapperSource, wrapper);
    copyFileSync(entry, join(tree, 'dist', 'cni', 'main.js'));
    const node = { VCNET_NODE: process.execPath };
    let run = runScript(wrapper, 'VERSION', '', node);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ argv: [], command: 'VERSION' });
    // Found through a symlink in a plugin directory: readlink (when PATH has it) finds the tree.
    const binDirectory = join(directory, 'cni-bin');
    mkdirSync(binDirectory);
    symlinkSync(wrapper, join(binDirectory, 'vcnet-cni'));
    run = runScript(join(binDirectory, 'vcnet-cni'), 'VERSION', '', { ...node, PATH: '/usr/bin:/bin' });
    expect(run.status, run.stderr).toBe(0);

    rmSync(join(tree, 'dist'), { recursive: true });
    expectCannotRunAnswers(wrapper, 'vcnet-cni cannot run');
    // No VCNET_NODE and no node on PATH: the same answers, naming what to set.
    const noNode = runScript(wrapper, 'ADD', '{"cniVersion":"1.0.0"}');
    expect(JSON.parse(noNode.stdout).details).toContain('none on PATH; set VCNET_NODE');
  });
});

/** util-linux's prlimit, found before the runs below take PATH away. */
const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit'].find((path) => spawnSync(path, ['--version']).status === 0);
if (!PRLIMIT) console.log('skipping the launcher open-file limit tests: prlimit is not installed (util-linux)');

/** Runs `path` as runScript does, under `prlimit --nofile=SOFT:HARD`. */
function runWithFiles(path: string, files: string, command: string, input: string) {
  return spawnSync(PRLIMIT!, [`--nofile=${files}`, path], {
    input,
    encoding: 'utf8',
    env: { CNI_COMMAND: command, PATH: '/nonexistent' },
  });
}

describe.skipIf(!PRLIMIT)("the launcher and the runtime's open-file limit", () => {
  /** A stand-in for the plugin that says the open-file limit it runs under. */
  function launcherOfLimitReader(): string {
    const reader = join(directory, 'limits.js');
    writeFileSync(
      reader,
      "process.stdout.write(/^Max open files.*$/m.exec(require('node:fs').readFileSync('/proc/self/limits', 'utf8'))[0]);",
    );
    const plugin = join(directory, 'vcnet-cni');
    writeFileSync(plugin, launcherScript(process.execPath, reader), { mode: 0o755 });
    return plugin;
  }

  it(`starts node under a soft limit below ${MINIMUM_OPEN_FILES}: node raises it to the hard limit itself`, () => {
    const plugin = launcherOfLimitReader();
    const raised = runWithFiles(plugin, '20:4096', 'VERSION', '');
    expect(raised.status, raised.stderr).toBe(0);
    expect(raised.stdout).toMatch(/^Max open files\s+4096\s+4096\s/);
  });

  it(`answers a hard limit below ${MINIMUM_OPEN_FILES} without starting node, naming it; DEL fails too (a retry can succeed once it is raised)`, () => {
    const plugin = launcherOfLimitReader();
    const hint = openFileLimitHint({ soft: 40, hard: 40 });
    for (const command of ['ADD', 'CHECK', 'DEL', 'VERSION', 'GC']) {
      const run = runWithFiles(plugin, '20:40', command, '{"cniVersion":"0.4.0","name":"pods"}');
      expect({ command, status: run.status }).toEqual({ command, status: 1 });
      expect(JSON.parse(run.stdout)).toEqual({
        cniVersion: '0.4.0',
        code: 100,
        msg: `vcnet-cni cannot start: its hard open-file limit is 40, below the ${MINIMUM_OPEN_FILES} files it needs`,
        details: `VCNET_SYSCALL (errno EMFILE): ${hint}`,
      });
      expect(run.stderr).toBe(`vcnet-cni: VCNET_SYSCALL (errno EMFILE): ${hint}\n`);
    }
    const status = runWithFiles(plugin, '20:40', 'STATUS', '{"cniVersion":"1.1.0"}');
    expect(JSON.parse(status.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50 });
  });
});
