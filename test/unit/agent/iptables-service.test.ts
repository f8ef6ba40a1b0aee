/**
 * GetIPTables and SetIPTables between AgentClient and the AgentService server: the family and the bytes
 * reach the IpTablesApplier as they were sent and its answer comes back; a server without one answers
 * UNIMPLEMENTED; a guest without the programs answers NOT_FOUND naming the program, refused rules
 * INTERNAL with iptables-restore's words, and the client's error hints at what to do for each.
 */
import { duplexPair } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/agent/client.js';
import { AgentStatusError, GuestProgramMissingError, IpTablesCommandError } from '../../../src/agent/errors.js';
import { GuestIpTables } from '../../../src/agent/guest/iptables.js';
import type { IpTablesApplier, IpVersion, NetworkApplier } from '../../../src/agent/network-applier.js';
import { createAgentServer } from '../../../src/agent/server.js';
import { StatusCode } from '../../../src/agent/ttrpc/status-code.js';
import { findProgram } from '../../../src/program-search.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

class RecordingIpTables implements IpTablesApplier {
  readonly calls: { method: string; version: IpVersion; rules?: string }[] = [];
  failWith: Error | undefined;
  async getIpTables(version: IpVersion) {
    this.calls.push({ method: 'get', version });
    if (this.failWith) throw this.failWith;
    return new TextEncoder().encode(`*filter\n# v${version}\nCOMMIT\n`);
  }
  async setIpTables(version: IpVersion, rules: Uint8Array) {
    this.calls.push({ method: 'set', version, rules: new TextDecoder().decode(rules) });
    if (this.failWith) throw this.failWith;
    return new TextEncoder().encode('restored\n');
  }
}

function setup(ipTables: IpTablesApplier | undefined) {
  const [clientSide, serverSide] = duplexPair();
  const connection = createAgentServer({} as NetworkApplier, ipTables ? { ipTables } : {}).serve(serverSide);
  const client = new AgentClient(clientSide, { callTimeoutMs: 5000 });
  cleanups.push(() => {
    client.close();
    connection.close();
  });
  return client;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe('GetIPTables / SetIPTables', () => {
  it('carry the family and the rules to the applier and its output back', async () => {
    const ipTables = new RecordingIpTables();
    const client = setup(ipTables);
    expect(text(await client.getIpTables())).toBe('*filter\n# v4\nCOMMIT\n');
    expect(text(await client.getIpTables({ v6: true }))).toBe('*filter\n# v6\nCOMMIT\n');
    expect(text(await client.setIpTables('*filter\n-A INPUT -j DROP\nCOMMIT\n', { v6: true }))).toBe('restored\n');
    expect(text(await client.setIpTables(new TextEncoder().encode('*nat\nCOMMIT\n')))).toBe('restored\n');
    expect(ipTables.calls).toEqual([
      { method: 'get', version: 4 },
      { method: 'get', version: 6 },
      { method: 'set', version: 6, rules: '*filter\n-A INPUT -j DROP\nCOMMIT\n' },
      { method: 'set', version: 4, rules: '*nat\nCOMMIT\n' },
    ]);
  });

  it('are UNIMPLEMENTED on a server given no IpTablesApplier, with a hint about the agent', async () => {
    const client = setup(undefined);
    const error = await client.getIpTables().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AgentStatusError);
    expect(error).toMatchObject({ status: StatusCode.UNIMPLEMENTED, local: false });
    expect((error as AgentStatusError).hint).toContain('does not serve GetIPTables/SetIPTables');
  });

  it('answer NOT_FOUND naming a missing program, INTERNAL with iptables-restore words for refused rules', async () => {
    const ipTables = new RecordingIpTables();
    const client = setup(ipTables);
    ipTables.failWith = new GuestProgramMissingError('ip6tables-save', '/usr/bin:/bin', 'install iptables');
    const missing = (await client.getIpTables({ v6: true }).catch((caught: unknown) => caught)) as AgentStatusError;
    expect(missing).toMatchObject({ status: StatusCode.NOT_FOUND, method: 'grpc.AgentService/GetIPTables' });
    expect(missing.statusMessage).toBe('ip6tables-save is not installed in the guest: not found in PATH /usr/bin:/bin');
    expect(missing.hint).toContain('install the iptables package in the guest image');
    expect(missing.hint).not.toContain('no such link');

    ipTables.failWith = new IpTablesCommandError(
      'iptables-restore',
      'exit 2',
      "iptables-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
      2,
    );
    const refused = (await client
      .setIpTables('*filter\n-A INPUT -j NOPE\nCOMMIT\n')
      .catch((caught: unknown) => caught)) as AgentStatusError;
    expect(refused).toMatchObject({ status: StatusCode.INTERNAL, method: 'grpc.AgentService/SetIPTables' });
    // One line: iptables' lines joined, its "Try ... --help" advice left out.
    expect(refused.statusMessage).toBe(
      "iptables-restore failed (exit 2): iptables-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist; Error occurred at line: 3",
    );
    expect(refused.hint).toContain('Error occurred at line: N');
  });

  it('refuse a v6 that is not a boolean and rules that are neither text nor bytes, before sending', async () => {
    const client = setup(new RecordingIpTables());
    await expect(client.getIpTables({ v6: 'yes' as unknown as boolean })).rejects.toMatchObject({
      code: 'VCNET_INVALID_INPUT',
    });
    await expect(client.setIpTables(42 as unknown as string)).rejects.toMatchObject({ code: 'VCNET_INVALID_INPUT' });
  });

  it('createAgentServer refuses an ipTables option without both methods', () => {
    expect(() => createAgentServer({} as NetworkApplier, { ipTables: {} as IpTablesApplier })).toThrow(/ipTables/);
  });
});

describe('GuestIpTables', () => {
  it('finds programs on its PATH only, and names the one missing with the PATH it searched', async () => {
    expect(findProgram('sh', ['/nonexistent', '/bin'])).toBe('/bin/sh');
    expect(findProgram('sh', ['/nonexistent'])).toBeUndefined();
    const guest = new GuestIpTables({ path: '/nonexistent-s21' });
    await expect(guest.getIpTables(4)).rejects.toMatchObject({
      code: 'VCNET_GUEST_PROGRAM_MISSING',
      value: 'iptables-save',
      message: 'iptables-save is not installed in the guest: not found in PATH /nonexistent-s21',
    });
    await expect(guest.setIpTables(6, new Uint8Array())).rejects.toMatchObject({ value: 'ip6tables-restore' });
  });
});
