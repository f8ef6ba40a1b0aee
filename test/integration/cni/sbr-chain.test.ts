/**
 * vcnet-cni in a chain with the real `sbr` plugin (source-based routing), which moves the pod's routes
 * from the main table to a table of their own behind a policy rule. Kata's agent (and vcnet's guest
 * view) sets only main-table routes: with sbr before vcnet-cni the guest gets none, and vcnet-cni says
 * so on stderr (its stdout stays the CNI result); with sbr after vcnet-cni the guest keeps them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateGuestNetwork } from '../../../src/network/guest.js';
import { Network } from '../../../src/network/network.js';
import { type Attachment, CniRuntime, missingCniPlugins, type PluginRun } from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';

const skipReason =
  process.getuid?.() !== 0
    ? 'sbr chain tests need root (namespaces, taps, tc)'
    : missingCniPlugins(['ptp', 'host-local', 'sbr']);
if (skipReason) console.log(`skipping vcnet-cni sbr chain tests: ${skipReason}`);

let workDirectory: string;
let stateDirectory: string;

beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-sbr-'));
  stateDirectory = join(workDirectory, 'state');
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

const SUBNET = '10.231.21.0/24';

/** ptp with host-local (a default route), as the plugins of a chain get their config from a conflist. */
function ptpConfig(): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'vcnet-sbr',
    type: 'ptp',
    ipam: {
      type: 'host-local',
      dataDir: join(workDirectory, 'ipam'),
      ranges: [[{ subnet: SUBNET }]],
      routes: [{ dst: '0.0.0.0/0' }],
    },
  };
}

function pluginConfig(type: string, previous: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { cniVersion: '1.0.0', name: 'vcnet-sbr', type, ...extra, prevResult: previous };
}

const vcnetExtra = () => ({ stateDir: stateDirectory });

/** Runs `types` in order as ADD, threading each result; returns every plugin's run. */
function addInOrder(runtime: CniRuntime, types: string[], environment: Record<string, string> = {}): PluginRun[] {
  const runs: PluginRun[] = [];
  let previous: Record<string, unknown> | undefined;
  for (const type of types) {
    const config =
      type === 'ptp' ? ptpConfig() : pluginConfig(type, previous!, type === 'vcnet-cni' ? vcnetExtra() : {});
    const run = runtime.invoke('ADD', config, environment);
    expect(run.status, `${type} ADD: ${run.stdout}${run.stderr}`).toBe(0);
    runs.push(run);
    previous = run.output;
  }
  return runs;
}

/** DEL in the reverse order, each with the final result, as libcni does. */
function delInReverse(runtime: CniRuntime, types: string[], result: Record<string, unknown>): void {
  for (const type of [...types].reverse()) {
    const config =
      type === 'ptp'
        ? { ...ptpConfig(), prevResult: result }
        : pluginConfig(type, result, type === 'vcnet-cni' ? vcnetExtra() : {});
    const run = runtime.invoke('DEL', config);
    expect(run.status, `${type} DEL: ${run.stdout}${run.stderr}`).toBe(0);
  }
}

/** The guest's routes as vcnet-cni's record gives them (what a runtime hands Kata's agent). */
function recordedGuestRoutes(attachment: Attachment): Array<{ dest: string; gateway: string; device: string }> {
  const record = JSON.parse(
    readFileSync(
      join(stateDirectory, attachment.containerId, 'interfaces', attachment.interfaceName, 'state.json'),
      'utf8',
    ),
  ) as { network: Parameters<typeof Network.load>[0] };
  const network = Network.load(record.network, 'guest-view');
  try {
    return generateGuestNetwork(network.endpoints()).routes.map(({ dest, gateway, device }) => ({
      dest,
      gateway,
      device,
    }));
  } finally {
    network.close();
  }
}

function nodeAndPod(): { node: TestNamespace; pod: TestNamespace; attachment: Attachment } {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  const attachment = {
    containerId: `ctr-${randomBytes(4).toString('hex')}`,
    namespacePath: pod.path,
    interfaceName: 'eth0',
  };
  return { node, pod, attachment };
}

/** vcnet-cni's own lines on stderr (the plugins before it write theirs to their own stderr). */
function vcnetLines(run: PluginRun): string[] {
  return run.stderr.split('\n').filter((line) => line !== '');
}

describe.skipIf(skipReason)('vcnet-cni with sbr', () => {
  it('before vcnet-cni: ADD says on stderr that the guest gets none of the table-100 routes, stdout stays the result', () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const chain = ['ptp', 'sbr', 'vcnet-cni'];
    const runs = addInOrder(runtime, chain);
    const add = runs[2]!;
    // The pod's routes are all in table 100 now, behind a rule for the pod's address.
    expect(pod.exec('ip', ['route', 'show', 'table', '100'])).toContain('default via');
    // stdout is exactly the result JSON.
    const result = JSON.parse(add.stdout) as { interfaces: Array<{ name: string }> };
    expect(result.interfaces.map((entry) => entry.name)).toContain('tap0_kata');
    const lines = vcnetLines(add);
    expect(lines, add.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^vcnet-cni ADD of ${attachment.containerId}/eth0: the guest does not get 3 routes of the pod \\(as in Kata: .*\\): routes in table 100 \\(policy routing\\): default via 10\\.231\\.21\\.1`,
      ),
    );
    // What the notice says: the record's guest view has no route.
    expect(recordedGuestRoutes(attachment)).toEqual([]);
    delInReverse(runtime, chain, add.output!);
  });

  it('before vcnet-cni with VCNET_LOG_LEVEL=warn: the notice is one log line, not also a plain line', () => {
    const { node, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const chain = ['ptp', 'sbr', 'vcnet-cni'];
    const runs = addInOrder(runtime, chain, { VCNET_LOG_LEVEL: 'warn' });
    const add = runs[2]!;
    const lines = vcnetLines(add);
    expect(lines, add.stderr).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      operation: 'ADD',
      sandbox: attachment.containerId,
      endpoint: 'eth0',
      msg: expect.stringContaining('routes in table 100 (policy routing)'),
    });
    delInReverse(runtime, chain, add.output!);
  });

  it("after vcnet-cni: the record's guest view keeps the default route, and ADD says nothing", () => {
    const { node, pod, attachment } = nodeAndPod();
    const runtime = new CniRuntime(node, attachment);
    const chain = ['ptp', 'vcnet-cni', 'sbr'];
    const runs = addInOrder(runtime, chain);
    expect(runs[1]!.stderr).toBe('');
    // sbr moved the pod's routes after vcnet-cni read them: the pod has none in its main table...
    expect(pod.exec('ip', ['route', 'show', 'table', 'main'])).not.toContain('default');
    // ...and the guest, whose traffic tc redirects at layer 2 past the pod's routing, still has them.
    expect(recordedGuestRoutes(attachment)).toContainEqual({
      dest: '0.0.0.0/0',
      gateway: '10.231.21.1',
      device: 'eth0',
    });
    delInReverse(runtime, chain, runs[2]!.output!);
  });
});
