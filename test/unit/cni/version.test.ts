import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CniConfig, parseDeleteTarget } from '../../../src/cni/config.js';
import { garbageCollect, parseValidAttachments } from '../../../src/cni/gc.js';
import { runPlugin } from '../../../src/cni/plugin.js';
import { AttachmentStore, type CniAttachmentState } from '../../../src/cni/state.js';
import { status } from '../../../src/cni/status.js';
import { commandAllowed, normalizeResult, resultInVersion, SUPPORTED_CNI_VERSIONS } from '../../../src/cni/version.js';

/** What bridge + host-local print, in the 1.x shape (dual stack). */
const internalResult = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'cni0', mac: '02:00:00:00:00:01' },
    { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/pod' },
  ],
  ips: [
    { address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 1 },
    { address: 'fd00::2/64', gateway: 'fd00::1', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

describe('results per CNI version', () => {
  it.each(['0.3.0', '0.3.1', '0.4.0'] as const)('%s: IPs carry "version" by address family', (version) => {
    const written = resultInVersion(internalResult, version);
    expect(written.cniVersion).toBe(version);
    expect(written.ips).toEqual([
      { version: '4', address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 1 },
      { version: '6', address: 'fd00::2/64', gateway: 'fd00::1', interface: 1 },
    ]);
    expect(written.interfaces).toEqual(internalResult.interfaces);
    expect(written.routes).toEqual(internalResult.routes);
  });

  it.each(['1.0.0', '1.1.0'] as const)('%s: IPs have no "version"; 1.1 fields pass through', (version) => {
    const with11Fields = {
      ...internalResult,
      interfaces: [...internalResult.interfaces, { name: 'tap0_kata', mac: '02:00:00:00:00:03', mtu: 1500 }],
      routes: [{ dst: '0.0.0.0/0', mtu: 1400, priority: 10, table: 100, scope: 0 }],
    };
    const fromOld = resultInVersion({ ...resultInVersion(with11Fields, '0.3.1') }, version);
    expect(fromOld).toEqual({ ...with11Fields, cniVersion: version });
  });

  it('normalizes any version to the 1.x shape and keeps a result without IPs as is', () => {
    expect(normalizeResult(resultInVersion(internalResult, '0.4.0')).ips).toEqual(internalResult.ips);
    expect(resultInVersion({ cniVersion: '0.3.0', interfaces: [] }, '0.3.1')).toEqual({
      cniVersion: '0.3.1',
      interfaces: [],
    });
  });

  it('allows CHECK from 0.4.0 and STATUS/GC from 1.1.0 only', () => {
    const allowed = (command: string) => SUPPORTED_CNI_VERSIONS.filter((version) => commandAllowed(command, version));
    expect(allowed('ADD')).toEqual([...SUPPORTED_CNI_VERSIONS]);
    expect(allowed('CHECK')).toEqual(['0.4.0', '1.0.0', '1.1.0']);
    expect(allowed('STATUS')).toEqual(['1.1.0']);
    expect(allowed('GC')).toEqual(['1.1.0']);
  });
});

let stateDirectory: string;

/** The network "pods" in the test's state directory, as STATUS and GC read it. */
const podsNetwork = (): CniConfig => ({
  cniVersion: '1.1.0',
  name: 'pods',
  type: 'vcnet-cni',
  model: 'tcfilter',
  queues: 1,
  stateDirectory,
  lockTimeoutMs: 0,
});

beforeEach(() => {
  stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-unit-'));
});
afterEach(() => rmSync(stateDirectory, { recursive: true, force: true }));

/** A record as ADD leaves it, for a namespace that no longer exists (DEL then only forgets it). */
function recordAttachment(containerId: string, interfaceName: string, networkName: string): AttachmentStore {
  const store = new AttachmentStore(stateDirectory, containerId, interfaceName);
  store.write({
    version: 2,
    id: containerId,
    interfaceName,
    networkName,
    namespace: { path: '/var/run/netns/vcnet-unit-gone', dev: 4, ino: 1 },
    createdAt: new Date(0).toISOString(),
    network: {
      version: 1,
      config: {
        namespacePath: '/var/run/netns/vcnet-unit-gone',
        model: 'tcfilter',
        namespaceCreatedByVcnet: false,
        disableNewNetns: false,
        queues: 1,
        vhostNet: 'auto',
      },
      endpoints: [],
    } as unknown as CniAttachmentState['network'],
  });
  return store;
}

describe('DEL reads only what it needs', () => {
  const env = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/gone' };

  it.each([
    ['an invalid model', { model: 'fast' }],
    ['an unknown field', { rateLimit: { burst: 1 } }],
    ['a version vcnet-cni does not speak', { cniVersion: '0.2.0' }],
    ['no name', { name: undefined }],
    ['a bad lockTimeoutMs', { lockTimeoutMs: -1 }],
  ])('succeeds with %s and still frees the record', async (_case, extra) => {
    const store = recordAttachment('c1', 'eth0', 'pods');
    const config = { cniVersion: '1.0.0', name: 'pods', type: 'vcnet-cni', stateDir: stateDirectory, ...extra };
    expect(await runPlugin(JSON.stringify(config), env)).toEqual({ stdout: '', exitCode: 0 });
    expect(store.read()).toBeUndefined();
  });

  it('succeeds when nothing is recorded, for any version, without CNI_NETNS, with bad or missing ids', async () => {
    for (const cniVersion of SUPPORTED_CNI_VERSIONS) {
      const config = JSON.stringify({ cniVersion, name: 'pods', type: 'vcnet-cni', stateDir: stateDirectory });
      expect(await runPlugin(config, env)).toEqual({ stdout: '', exitCode: 0 });
      expect(await runPlugin(config, { ...env, CNI_NETNS: undefined })).toEqual({ stdout: '', exitCode: 0 });
    }
    expect(await runPlugin('{}', { CNI_COMMAND: 'DEL' })).toEqual({ stdout: '', exitCode: 0 });
    expect(await runPlugin('not json', { ...env, CNI_IFNAME: 'eth/0' })).toEqual({ stdout: '', exitCode: 0 });
  });

  it('parses only the ids, the state directory and the lock timeout', () => {
    const input = JSON.stringify({ stateDir: '/tmp/x', lockTimeoutMs: 5, model: 'bogus', queues: -1 });
    expect(parseDeleteTarget(input, env)).toEqual({
      environment: {
        command: 'DEL',
        containerId: 'c1',
        interfaceName: 'eth0',
        namespacePath: '/var/run/netns/gone',
        pluginPath: [],
      },
      stateDirectory: '/tmp/x',
      lockTimeoutMs: 5,
    });
    // A stateDir ADD refuses: nothing can be recorded there.
    expect(parseDeleteTarget(JSON.stringify({ stateDir: 'relative' }), env)).toBeUndefined();
    expect(parseDeleteTarget('not json', env)?.stateDirectory).toBe('/run/vcnet/cni');
  });
});

describe('commands by version', () => {
  const addEnv = {
    CNI_CONTAINERID: 'c1',
    CNI_IFNAME: 'eth0',
    CNI_NETNS: '/var/run/netns/pod',
    CNI_PATH: '/opt/cni/bin',
  };

  it('refuses CHECK of a 0.3.x config and STATUS/GC below 1.1.0 with code 1', async () => {
    for (const [command, version] of [
      ['CHECK', '0.3.1'],
      ['STATUS', '1.0.0'],
      ['GC', '0.4.0'],
    ] as const) {
      const config = { cniVersion: version, name: 'pods', type: 'vcnet-cni', stateDir: stateDirectory };
      const outcome = await runPlugin(JSON.stringify(config), { ...addEnv, CNI_COMMAND: command });
      expect(outcome.exitCode).toBe(1);
      expect(JSON.parse(outcome.stdout)).toMatchObject({
        cniVersion: version,
        code: 1,
        msg: `CNI ${command} is not part of cniVersion ${version}`,
      });
    }
  });

  it('STATUS (1.1.0) succeeds with a writable state directory and names what is missing otherwise', async () => {
    const config = { cniVersion: '1.1.0', name: 'pods', type: 'vcnet-cni', stateDir: join(stateDirectory, 'sub') };
    expect(await runPlugin(JSON.stringify(config), { CNI_COMMAND: 'STATUS' })).toEqual({ stdout: '', exitCode: 0 });
    const withoutTun = () => status(podsNetwork(), join(stateDirectory, 'no-tun'));
    expect(withoutTun).toThrow(expect.objectContaining({ cniCode: 50, code: 'VCNET_CNI_NOT_AVAILABLE' }));
    expect(withoutTun).toThrow(/no-tun is not usable \(ENOENT\): no tap can be made/);
  });

  it('STATUS makes nothing: a missing stateDir is judged by the directory ADD would make it in', () => {
    const tun = join(stateDirectory, 'tun');
    writeFileSync(tun, '');
    const at = (stateDir: string) => () => status({ ...podsNetwork(), stateDirectory: stateDir }, tun);
    // Missing, two levels down in a writable directory: ready, and still missing afterwards.
    expect(at(join(stateDirectory, 'a', 'b'))).not.toThrow();
    expect(existsSync(join(stateDirectory, 'a'))).toBe(false);
    // There already, without .locks: ready, and no .locks made.
    expect(at(stateDirectory)).not.toThrow();
    expect(existsSync(join(stateDirectory, '.locks'))).toBe(false);
    // ADD's reasons: under a file (ENOTDIR), and under /proc, where mkdir answers ENOENT.
    expect(at(join(tun, 'state'))).toThrow(/cannot be used as a state directory: .*tun is not a directory \(ENOTDIR\)/);
    const proc = `/proc/vcnet-no-such-${process.pid}`;
    expect(at(join(proc, 'state'))).toThrow(
      `cannot be used as a state directory: cannot create ${proc} (ENOENT: no such file or directory)`,
    );
    expect(at(join(proc, 'state'))).toThrow(expect.objectContaining({ cniCode: 50 }));
  });
});

describe('GC (1.1.0)', () => {
  it('removes the stale records of its own network only, keeping the valid ones', async () => {
    const stale = recordAttachment('stale', 'eth0', 'pods');
    const valid = recordAttachment('alive', 'eth0', 'pods');
    const otherNetwork = recordAttachment('other', 'eth0', 'elsewhere');
    const config = {
      cniVersion: '1.1.0',
      name: 'pods',
      type: 'vcnet-cni',
      stateDir: stateDirectory,
      'cni.dev/valid-attachments': [{ containerID: 'alive', ifname: 'eth0' }],
    };
    expect(await runPlugin(JSON.stringify(config), { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' })).toEqual({
      stdout: '',
      exitCode: 0,
    });
    expect(stale.read()).toBeUndefined();
    expect(valid.read()?.id).toBe('alive');
    expect(otherNetwork.read()?.networkName).toBe('elsewhere');
  });

  it('reports what it removed; with an empty valid list every record of the network is stale', async () => {
    recordAttachment('a', 'eth0', 'pods');
    recordAttachment('a', 'net1', 'pods');
    const outcome = await garbageCollect(podsNetwork(), parseValidAttachments({ 'cni.dev/valid-attachments': [] }));
    expect(outcome.removed.map((entry) => entry.ifname).sort()).toEqual(['eth0', 'net1']);
    expect(outcome.busy).toEqual([]);
  });

  it("skips a record it cannot read (whose network is unknown) with a warning, and removes the network's others", async () => {
    recordAttachment('a', 'eth0', 'pods');
    recordAttachment('b', 'eth0', 'pods');
    writeFileSync(join(stateDirectory, 'b', 'interfaces', 'eth0', 'state.json'), 'garbage');
    const warnings: string[] = [];
    const outcome = await garbageCollect(podsNetwork(), [], (line) => warnings.push(line));
    expect(outcome.removed).toEqual([{ containerID: 'a', ifname: 'eth0' }]);
    expect(warnings).toEqual([
      expect.stringMatching(/^vcnet-cni GC of network pods: skipped b\/eth0: .*not valid JSON/),
    ]);
    expect(readFileSync(join(stateDirectory, 'b', 'interfaces', 'eth0', 'state.json'), 'utf8')).toBe('garbage');
  });

  it('without a valid-attachments list removes nothing and fails with code 7 naming the key', async () => {
    const live = recordAttachment('alive', 'eth0', 'pods');
    const config = { cniVersion: '1.1.0', name: 'pods', type: 'vcnet-cni', stateDir: stateDirectory };
    const outcome = await runPlugin(JSON.stringify(config), { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' });
    expect(outcome.exitCode).toBe(1);
    const reply = JSON.parse(outcome.stdout);
    expect(reply).toMatchObject({ cniVersion: '1.1.0', code: 7 });
    expect(reply.msg).toBe(
      'invalid network config: cni.dev/valid-attachments: missing: GC needs the list of attachments still in use (or "cni.dev/attachments", its first name); nothing was removed',
    );
    expect(reply.details).toContain('VCNET_CNI_CONFIG');
    expect(live.read()?.id).toBe('alive');
  });

  it('takes the first SPEC name cni.dev/attachments as an alias (with both keys, keeps what either lists)', async () => {
    const stale = recordAttachment('stale', 'eth0', 'pods');
    const alive = recordAttachment('alive', 'eth0', 'pods');
    const config = {
      cniVersion: '1.1.0',
      name: 'pods',
      type: 'vcnet-cni',
      stateDir: stateDirectory,
      'cni.dev/attachments': [{ containerID: 'alive', ifname: 'eth0' }],
    };
    const env = { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' };
    expect(await runPlugin(JSON.stringify(config), env)).toEqual({ stdout: '', exitCode: 0 });
    expect(stale.read()).toBeUndefined();
    expect(alive.read()?.id).toBe('alive');

    const second = recordAttachment('second', 'eth0', 'pods');
    const both = { ...config, 'cni.dev/valid-attachments': [{ containerID: 'second', ifname: 'eth0' }] };
    expect(await runPlugin(JSON.stringify(both), env)).toEqual({ stdout: '', exitCode: 0 });
    expect(alive.read()?.id).toBe('alive');
    expect(second.read()?.id).toBe('second');

    const malformed = await runPlugin(JSON.stringify({ ...config, 'cni.dev/attachments': 'all' }), env);
    expect(JSON.parse(malformed.stdout)).toMatchObject({ code: 7 });
    expect(JSON.parse(malformed.stdout).msg).toContain('cni.dev/attachments');
  });

  it('refuses a malformed valid-attachments list with code 7 naming the key', async () => {
    const config = { cniVersion: '1.1.0', name: 'pods', type: 'vcnet-cni', 'cni.dev/valid-attachments': [{ id: 1 }] };
    const outcome = await runPlugin(JSON.stringify(config), { CNI_COMMAND: 'GC' });
    expect(JSON.parse(outcome.stdout)).toMatchObject({ code: 7 });
    expect(JSON.parse(outcome.stdout).msg).toContain('cni.dev/valid-attachments');
  });
});
