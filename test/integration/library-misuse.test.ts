/**
 * What a JavaScript caller can get wrong reaches it as a VcnetError with a code (bad input naming the
 * field), never as a plain Error or a TypeError from inside Node: a closed NetlinkHandle, a sandbox
 * id or a state directory that is not a string, a config that is not an object.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError, VcnetError } from '../../src/errors.js';
import { NetlinkClosedError } from '../../src/netlink/errors.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { defineNetworkConfig, validateNetworkConfig } from '../../src/network/config.js';
import { attachSandbox, detachSandbox, readSandbox, SandboxExistsError } from '../../src/sandbox/service.js';
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
});
