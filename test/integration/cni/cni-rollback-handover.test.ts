/**
 * vcnet-cni ADD whose rollback hands an ingress qdisc over to another tool, run out of process as a
 * runtime runs the plugin (CNI_* variables, the config on stdin) after the real bridge plugin: the
 * CNI error (`msg`, `details`) says the qdisc stays and why, no record is kept, and the runtime's DEL
 * afterwards leaves the namespace as the bridge plugin left it but for the other tool's qdisc and
 * filter. The attach is held before eth0's redirect (test/helpers/fault-preload.mjs); there another
 * tool's filter goes into vcnet's ingress qdisc on eth0, and the tap is deleted, so the kernel
 * refuses the redirect to it.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectOutput } from '../../helpers/child-output.js';
import { pauseAtStep } from '../../helpers/cli.js';
import {
  bridgeThenVcnet,
  type CniErrorOutput,
  CniRuntime,
  missingCniPlugins,
  VCNET_CNI_PROGRAM,
} from '../../helpers/cni.js';
import { cleanupNamespaces, makeNamespace } from '../../helpers/namespace.js';
import { awaitLinkLocal, fingerprint } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const skipReason = missingCniPlugins();
if (skipReason) console.log(`skipping vcnet-cni rollback handover tests: ${skipReason}`);

let workDirectory: string;

beforeEach(() => {
  workDirectory = mkdtempSync(join(tmpdir(), 'vcnet-cni-handover-'));
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** The records under the plugin's state directory (lock files aside). */
function records(stateDirectory: string): string[] {
  if (!existsSync(stateDirectory)) return [];
  return (readdirSync(stateDirectory, { recursive: true }) as string[]).filter((name) => name.endsWith('.json'));
}

describe.skipIf(skipReason)('vcnet-cni ADD after bridge whose rollback hands a qdisc over', () => {
  it("says so in msg and details, keeps no record, and DEL leaves only the other tool's qdisc and filter", async () => {
    const node = makeNamespace('node');
    const pod = makeNamespace('pod');
    pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    const stateDirectory = join(workDirectory, 'state');
    const list = bridgeThenVcnet({
      name: 'vcnet-handover',
      bridge: 'vcbr9',
      subnet: '10.231.9.0/24',
      dataDir: join(workDirectory, 'ipam'),
      vcnet: { stateDir: stateDirectory },
    });
    const [bridgePlugin, vcnetPlugin] = list.plugins;
    const runtime = new CniRuntime(node, {
      containerId: `ctr-${randomBytes(4).toString('hex')}`,
      namespacePath: pod.path,
      interfaceName: 'eth0',
    });
    const common = { cniVersion: list.cniVersion, name: list.name };
    const bridgeAdd = runtime.invoke('ADD', { ...bridgePlugin!, ...common });
    expect(bridgeAdd.status, bridgeAdd.stdout + bridgeAdd.stderr).toBe(0);
    awaitLinkLocal(pod, 'eth0');
    const afterBridge = fingerprint(pod);

    // vcnet-cni's ADD (tcfilter: the tap, its settings and ingress qdisc, eth0's ingress qdisc, then
    // eth0's redirect at step 7: the bridge plugin's veth has no transmit queue, which vcnet puts back after eth0's ingress qdisc), held before that redirect.
    const vcnetConfig = { ...vcnetPlugin!, ...common, prevResult: bridgeAdd.output };
    const child = spawn(process.execPath, [VCNET_CNI_PROGRAM], {
      env: runtime.environment('ADD', pauseAtStep(7, 60_000)) as Record<string, string>,
    });
    child.stdin.end(JSON.stringify(vcnetConfig));
    const output = collectOutput(child);
    await until(
      () => output.sofar().stderr.includes('paused at step 7') || child.exitCode !== null,
      "vcnet-cni to pause before eth0's redirect",
    );
    expect(output.sofar().stderr).toContain('paused at step 7 (add-filter)');
    pod.exec(
      'tc',
      'filter add dev eth0 ingress prio 100 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
    );
    pod.exec('ip', ['link', 'del', 'tap0_kata']);
    child.kill('SIGUSR2');
    const add = await output.done;

    expect(add.status, add.stderr).not.toBe(0);
    const reply = JSON.parse(add.stdout) as CniErrorOutput;
    const handedOver =
      "everything it had made was removed but the ingress qdisc on eth0, which stays: it holds another tool's filter (prio 100); vcnet's own filters in it were deleted and no record keeps it, as it is that tool's now: neither detach nor gc will delete it";
    expect(reply.msg).toMatch(/^attaching eth0 failed: /);
    expect(reply.msg).toContain(handedOver);
    // details is the code and the hint: what to do about the cause, and that the namespace is as it
    // was but for what another tool holds.
    expect(reply.details).toMatch(/^VCNET_ATTACH_FAILED: /);
    expect(reply.details).toContain(
      '; the namespace is as it was before the attach but for what another tool holds, which the message names',
    );
    expect(records(stateDirectory)).toEqual([]);

    const del = runtime.invoke('DEL', { ...vcnetPlugin!, ...common, prevResult: bridgeAdd.output });
    expect(del.status, del.stdout + del.stderr).toBe(0);
    // The other tool's filter, in the qdisc vcnet made and handed over, is all that differs.
    const filters = pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    expect(filters).toContain('match 0a090909/ffffffff at 16');
    expect(filters).not.toContain('Redirect');
    pod.exec('tc', 'qdisc del dev eth0 ingress'.split(' '));
    expect(fingerprint(pod)).toEqual(afterBridge);
    runtime.del({ ...list, plugins: [bridgePlugin!] }, bridgeAdd.output);
  });
});
