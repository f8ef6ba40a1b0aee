/**
 * What a JavaScript caller can get wrong reaches it as a VcnetError with a code (bad input naming the
 * field), never as a plain Error or a TypeError from inside Node: a closed NetlinkHandle, a sandbox
 * id or a state directory that is not a string, a config that is not an object.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidFieldsError, InvalidInputError, VcnetError } from '../../src/errors.js';
import { NetlinkClosedError } from '../../src/netlink/errors.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { defineNetworkConfig, validateNetworkConfig } from '../../src/network/config.js';
import { collectGarbage } from '../../src/network/garbage-collector.js';
import { readSandbox } from '../../src/network/recorded-network.js';
import { attachSandbox, SandboxExistsError } from '../../src/sandbox/attach.js';
import { detachSandbox } from '../../src/sandbox/detach.js';
import { vcnet } from '../helpers/cli.js';
import { cleanupNamespaces, makeNamespace } from '../helpers/namespace.js';
import { makePod } from '../helpers/pod.js';

afterEach(() => cleanupNamespaces());

describe('library misuse', () => {
  it('a NetlinkHandle used after close() is VCNET_HANDLE_CLOSED, for a dump and for a change', async () => {
    const pod = makeNamespace('closed');
    const handle = NetlinkHandle.open(pod.path);
    expect((await handle.links()).map((link) => link.name)).toContain('lo');
    handle.close();
    const dump = await handle.links().catch((error: unknown) => error);
    expect(dump).toBeInstanceOf(NetlinkClosedError);
    expect(dump).toBeInstanceOf(VcnetError);
    expect(dump).toMatchObject({ code: 'VCNET_HANDLE_CLOSED', value: pod.path });
    expect(() => handle.namespaceFd()).toThrow(NetlinkClosedError);
  });

  it('a sandbox id or state directory that is not a string is invalid input naming the field', async () => {
    const pod = makeNamespace('badid');
    const config = defineNetworkConfig({ namespacePath: pod.path });
    const byNumber = await attachSandbox(42 as unknown as string, config).catch((error: unknown) => error);
    expect(byNumber).toBeInstanceOf(InvalidInputError);
    expect(byNumber).toMatchObject({ code: 'VCNET_INVALID_INPUT', field: 'sandbox', value: 42 });
    const byDirectory = await detachSandbox('sb1', { stateDirectory: 7 as unknown as string }).catch(
      (error: unknown) => error,
    );
    expect(byDirectory).toMatchObject({ code: 'VCNET_INVALID_INPUT', field: 'stateDirectory', value: 7 });
  });

  it('a config that is not an object is invalid input, from defineNetworkConfig and validateNetworkConfig', () => {
    for (const given of [null, undefined, 'netns', []]) {
      expect(() => defineNetworkConfig(given as never), String(given)).toThrow(InvalidInputError);
      expect(() => validateNetworkConfig(given as never), String(given)).toThrow(InvalidInputError);
    }
    const refused = (() => {
      try {
        defineNetworkConfig(null as never);
      } catch (error) {
        return error;
      }
    })();
    expect(refused).toMatchObject({ code: 'VCNET_INVALID_INPUT', field: 'options', value: null });
  });

  it("an attached sandbox's hint names its state directory, and the command it gives detaches it", async () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-hint-'));
    try {
      const config = defineNetworkConfig({ namespacePath: pod.path });
      await attachSandbox('sb1', config, { stateDirectory });
      const refused = await attachSandbox('sb1', config, { stateDirectory }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(SandboxExistsError);
      const hint = (refused as SandboxExistsError).hint ?? '';
      expect(hint).toContain(`--state-dir ${stateDirectory}`);
      expect(hint).toContain('stateDirectory');
      const command = /vcnet (detach --sandbox sb1 --state-dir \S+)/.exec(hint)?.[1]?.split(' ') ?? [];
      const detached = vcnet(command);
      expect(detached.stderr).toBe('');
      expect(detached.status).toBe(0);
      expect(readSandbox('sb1', stateDirectory)).toBeUndefined();
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
    // The default state directory needs no flag.
    expect(new SandboxExistsError('sb1', '/run/vcnet/sandboxes/sb1/state.json').hint).not.toContain('--state-dir');
  });

  it('options of the wrong type, a misspelt key or a lock wait of "soon" change nothing in the pod or the state', async () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-f11p-'));
    const links = async () => {
      const handle = NetlinkHandle.open(pod.path);
      try {
        return (await handle.links()).map((link) => `${link.index}:${link.name}`).sort();
      } finally {
        handle.close();
      }
    };
    try {
      const before = await links();
      const config = defineNetworkConfig({ namespacePath: pod.path });
      // A string where the options belong used to attach into the default state directory.
      const byString = await attachSandbox('f11p-sb1', config, stateDirectory as never).catch(
        (error: unknown) => error,
      );
      expect(byString).toMatchObject({ code: 'VCNET_INVALID_INPUT', field: 'options', value: stateDirectory });
      const misspelt = await attachSandbox('f11p-sb1', config, { stateDir: stateDirectory } as never).catch(
        (error: unknown) => error,
      );
      expect(misspelt).toMatchObject({ field: 'options key', value: 'stateDir' });
      expect((misspelt as Error).message).toContain('did you mean stateDirectory?');
      expect(await links()).toEqual(before);
      expect(readdirSync(stateDirectory)).toEqual([]);
      expect(readSandbox('f11p-sb1')).toBeUndefined();

      // Attached for real; a detach with a lock wait that is not milliseconds is refused and leaves it.
      await attachSandbox('f11p-sb1', config, { stateDirectory });
      const attached = await links();
      expect(attached.length).toBeGreaterThan(before.length);
      for (const lockTimeoutMs of ['soon', -5]) {
        const refused = await detachSandbox('f11p-sb1', { stateDirectory, lockTimeoutMs } as never).catch(
          (error: unknown) => error,
        );
        expect(refused).toMatchObject({ field: 'lockTimeoutMs', value: lockTimeoutMs });
      }
      expect(await links()).toEqual(attached);
      expect(readSandbox('f11p-sb1', stateDirectory)).toBeDefined();
      // A gc given a string instead of options runs nowhere: the sandbox's taps stay.
      const gc = await collectGarbage(stateDirectory as never).catch((error: unknown) => error);
      expect(gc).toMatchObject({ field: 'options', value: stateDirectory });
      expect(await links()).toEqual(attached);
      expect((await detachSandbox('f11p-sb1', { stateDirectory })).found).toBe(true);
      expect(await links()).toEqual(before);
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  });
  it('a plain config without namespaceCreatedByVcnet and disableNewNetns attaches with them false, and its record detaches', async () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-s13fe-'));
    try {
      const plain = { namespacePath: pod.path, model: 'tcfilter', queues: 1, vhostNet: 'off' } as never;
      await attachSandbox('s13fe-plain', plain, { stateDirectory });
      expect(readSandbox('s13fe-plain', stateDirectory)?.network.config).toMatchObject({
        namespaceCreatedByVcnet: false,
        disableNewNetns: false,
      });
      expect(await detachSandbox('s13fe-plain', { stateDirectory })).toMatchObject({
        found: true,
        report: { left: [] },
      });
      expect(pod.exec('ip', ['-o', 'link', 'show', 'group', String(0x7663)]).trim()).toBe('');
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  });

  it('a config the record would refuse is refused before anything is made, every bad field named at once', async () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-s13fe-'));
    try {
      const bad = {
        namespacePath: pod.path,
        model: 'tcfilter',
        queues: 0,
        vhostNet: 'on',
        namespaceCreatedByVcnet: 'no',
      } as never;
      const refused = await attachSandbox('s13fe-bad', bad, { stateDirectory }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(InvalidFieldsError);
      expect((refused as InvalidFieldsError).issues.map((issue) => issue.field).sort()).toEqual([
        'namespaceCreatedByVcnet',
        'queues',
        'vhostNet',
      ]);
      expect((refused as Error).message).toMatch(/invalid \w+: .* and 2 more: /);
      expect(readdirSync(stateDirectory)).toEqual([]);
      expect(pod.exec('ip', ['-o', 'link', 'show', 'group', String(0x7663)]).trim()).toBe('');
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  });

  it("a namespacePath that is an `ip netns` name is refused with the hint naming its /var/run/netns path, as --netns's", async () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-netns-name-'));
    try {
      const name = basename(pod.path);
      const refusal = (namespacePath: string) => {
        try {
          defineNetworkConfig({ namespacePath });
        } catch (error) {
          return error;
        }
      };
      expect(refusal(name)).toMatchObject({ field: 'namespacePath', hint: expect.stringContaining(pod.path) });
      // A plain config, not made by defineNetworkConfig, is refused by the attach the same way.
      const refused = await attachSandbox('by-name', { namespacePath: name } as never, { stateDirectory }).catch(
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(InvalidFieldsError);
      expect(refused).toMatchObject({ field: 'namespacePath', value: name });
      expect((refused as InvalidFieldsError).hint).toBe(
        `did you mean ${pod.path}? A namespace's name from \`ip netns\` is not a path: give its file`,
      );
      expect(readdirSync(stateDirectory)).toEqual([]);
      // A relative path that names no namespace there keeps the hint of what is accepted.
      expect((refusal('var/run/netns/x') as InvalidFieldsError).hint).toContain(
        'set namespacePath to the absolute path',
      );
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  });

  it('a running VM given half (a control socket without the agent, or the other way) or Firecracker with queues is refused before anything is made', async () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-half-vm-'));
    try {
      const config = defineNetworkConfig({ namespacePath: pod.path });
      const cases = [
        {
          options: { hypervisor: { kind: 'qemu' as const, controlSocket: '/tmp/no-qmp.sock' } },
          field: 'agentSocket',
          message:
            "invalid agentSocket: not given (accepted: the running VM's agent socket too: hypervisor.controlSocket alone would let addInterface, removeInterface and watchSandbox change the host but not the VM)",
        },
        {
          options: { hypervisor: { kind: 'clh' as const }, agentSocket: '/tmp/no-agent.sock' },
          field: 'hypervisor.controlSocket',
          message:
            "invalid hypervisor.controlSocket: not given (accepted: the running VM's control socket too: agentSocket alone would let addInterface, removeInterface and watchSandbox change the host but not the VM)",
        },
        {
          options: { agentSocket: '/tmp/no-agent.sock' },
          field: 'hypervisor.controlSocket',
          message: undefined,
        },
      ];
      for (const { options, field, message } of cases) {
        const refused = await attachSandbox('half-vm', config, { stateDirectory, ...options }).catch(
          (error: unknown) => error,
        );
        expect(refused, field).toBeInstanceOf(InvalidInputError);
        expect(refused).toMatchObject({
          code: 'VCNET_INVALID_INPUT',
          field,
          hint: 'give both hypervisor.controlSocket and agentSocket, or neither when no VM runs yet',
        });
        if (message) expect((refused as Error).message).toBe(message);
      }
      const queues = defineNetworkConfig({ namespacePath: pod.path, queues: 2 });
      const firecracker = await attachSandbox('half-vm', queues, {
        stateDirectory,
        hypervisor: { kind: 'firecracker' },
      }).catch((error: unknown) => error);
      expect(firecracker).toMatchObject({
        code: 'VCNET_INVALID_INPUT',
        field: 'queues',
        value: 2,
        accepted: '1 with hypervisor.kind firecracker (it has no multi-queue NICs)',
      });
      expect(readdirSync(stateDirectory)).toEqual([]);
      expect(pod.exec('ip', ['-o', 'link', 'show', 'group', String(0x7663)]).trim()).toBe('');
      // Firecracker has no hot-plug: its API socket alone is a sandbox's whole VM record.
      const attached = await attachSandbox('half-vm', config, {
        stateDirectory,
        hypervisor: { kind: 'firecracker', controlSocket: '/tmp/no-api.sock' },
      });
      expect(attached.endpoints).toHaveLength(1);
      expect(await detachSandbox('half-vm', { stateDirectory })).toMatchObject({ found: true, report: { left: [] } });
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  });

  it("the CLI says the same refusals in its flags' terms", () => {
    const { pod } = makePod();
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-half-vm-cli-'));
    try {
      const attach = (...flags: string[]) =>
        vcnet(['attach', '--sandbox', 'half-vm', '--netns', pod.path, '--state-dir', stateDirectory, ...flags]);
      const qmpAlone = attach('--qmp', '/tmp/no-qmp.sock');
      expect(qmpAlone.status).toBe(2);
      expect(qmpAlone.stderr).toContain(
        "invalid --agent: not given (accepted: the running VM's agent socket too: --qmp alone would let add-iface, del-iface and watch change the host but not the VM)",
      );
      expect(qmpAlone.stderr).toContain('give both --qmp and --agent, or neither when no VM runs yet');
      const agentAlone = attach('--hypervisor', 'clh', '--agent', '/tmp/no-agent.sock', '--dry-run');
      expect(agentAlone.status).toBe(2);
      expect(agentAlone.stderr).toContain(
        "invalid --api-socket: not given (accepted: the running VM's control socket too: --agent alone would let add-iface, del-iface and watch change the host but not the VM)",
      );
      const queues = attach('--hypervisor', 'firecracker', '--queues', '2');
      expect(queues.status).toBe(2);
      expect(queues.stderr).toContain(
        'invalid --queues: 2 (accepted: 1 with --hypervisor firecracker (it has no multi-queue NICs))',
      );
      expect(readdirSync(stateDirectory)).toEqual([]);
    } finally {
      rmSync(stateDirectory, { recursive: true, force: true });
    }
  });
});
