/**
 * In a user namespace other than the initial one (rootless podman, `unshare -Urn`), a macvtap's
 * /dev/tapN belongs to the host's root and nobody inside may open it: attach and vcnet-cni ADD
 * refuse the macvtap model before making anything (no state directory either), with a hint to use
 * tcfilter, which works there.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI } from '../../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniAlone } from '../../helpers/cni.js';

/** Runs `script` (sh, with $NS the path of a pod namespace made inside) in `unshare -Urn`. */
function inUserNamespace(script: string, input = '') {
  const setup = `unshare -n sleep 60 & holder=$!; sleep 0.3; NS=/proc/$(pgrep -P $holder -n || echo $holder)/ns/net
nsenter --net=$NS ip link add eth0 type veth peer name peer0 && nsenter --net=$NS ip addr add 10.77.0.2/24 dev eth0 && nsenter --net=$NS ip link set eth0 up
${script}
status=$?; kill $holder; exit $status`;
  const result = spawnSync('unshare', ['-Urn', 'sh', '-c', setup], {
    encoding: 'utf8',
    input,
    env: { ...process.env, CLI, CNI_MAIN: VCNET_CNI_PROGRAM, NODE: process.execPath },
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

const probe = spawnSync('unshare', ['-Urn', 'true']);
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root'
    : probe.error || probe.status !== 0
      ? `unshare -Urn does not work here (${probe.error?.message ?? probe.stderr})`
      : undefined;
if (skipReason) console.log(`skipping the user namespace tests: ${skipReason}`);

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-userns-'));
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

describe.skipIf(skipReason !== undefined)('the macvtap model in a user namespace', () => {
  it('attach --model macvtap is refused (exit 2) before anything is made; tcfilter works there', () => {
    const state = join(directory, 'state');
    const refused = inUserNamespace(
      `"$NODE" "$CLI" attach --sandbox m --model macvtap --netns $NS --state-dir ${state}`,
    );
    expect(refused.status, refused.stderr).toBe(2);
    expect(refused.stderr).toContain('invalid --model: "macvtap"');
    expect(refused.stderr).toContain('hint: use model tcfilter in a user namespace');
    expect(existsSync(state)).toBe(false);

    const tcfilter = inUserNamespace(
      `"$NODE" "$CLI" attach --sandbox t --netns $NS --state-dir ${state} && "$NODE" "$CLI" detach --sandbox t --state-dir ${state}`,
    );
    expect(tcfilter.status, tcfilter.stderr).toBe(0);
    expect(tcfilter.stdout).toContain('tcfilter');
  }, 60_000);

  it('a pod link that is a macvtap is refused too: by attach, add-iface and watch, before anything is made for it', () => {
    const state = join(directory, 'state');
    const request = join(directory, 'mvt0.json');
    const vcnetIn = `"$NODE" "$CLI"`;
    const macvtap = (name: string, address: string) =>
      `nsenter --net=$NS sh -c 'ip link add link peer0 name ${name} type macvtap mode bridge && ip addr add ${address} dev ${name} && ip link set ${name} up'`;
    const run = inUserNamespace(`nsenter --net=$NS ip link set peer0 up
${macvtap('mvt0', '10.78.0.2/24')}
echo "== attach"; ${vcnetIn} attach --sandbox p --netns $NS --state-dir ${state}; echo "rc=$?"; ls ${state} 2>&1
nsenter --net=$NS ip addr flush dev mvt0
${vcnetIn} attach --sandbox p --netns $NS --state-dir ${state} >/dev/null 2>&1 || exit 9
nsenter --net=$NS ip addr add 10.78.0.2/24 dev mvt0
echo '{"name":"mvt0","device":"mvt0"}' > ${request}
echo "== add-iface"; ${vcnetIn} add-iface p ${request} --state-dir ${state}; echo "rc=$?"
( sleep 2; ${macvtap('mvt1', '10.79.0.2/24')} ) &
echo "== watch"; timeout -s INT 6 ${vcnetIn} watch --sandbox p --state-dir ${state} --json
echo "== links"; nsenter --net=$NS ip -o link show
${vcnetIn} detach --sandbox p --state-dir ${state} >/dev/null || exit 8`);
    expect(run.status, run.stderr).toBe(0);
    const [, attach, addIface, watch, links] = `${run.stdout}`.split(/^== \S+\n/m);
    const refusal = (link: string) =>
      `invalid interface: "${link}" (accepted: a link other than a macvtap in a user namespace other than the initial one`;
    // attach: exit 2, and neither the state directory nor any link made.
    expect(attach).toContain('rc=2');
    expect(attach).toContain('No such file or directory');
    expect(run.stderr).toContain(refusal('mvt0'));
    expect(run.stderr).toContain(
      'hint: give the pod a veth or macvlan instead of the macvtap mvt0, which model tcfilter',
    );
    // add-iface of the macvtap: exit 2.
    expect(addIface).toContain('rc=2');
    // watch: the new macvtap is listed as failed with the same code, not attached.
    const summaries = (watch ?? '')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map(
        (line) =>
          JSON.parse(line) as { added: string[]; failed: Array<{ name: string; code: string; message: string }> },
      );
    expect(summaries.flatMap((summary) => summary.added)).toEqual([]);
    // Refused for what it is: reported once, with what works instead, and not tried again.
    expect(summaries.flatMap((summary) => summary.failed)).toEqual([
      {
        name: 'mvt1',
        code: 'VCNET_INVALID_INPUT',
        message: expect.stringContaining(refusal('mvt1')),
        hint: expect.stringContaining('mvt1 is a macvtap, which vcnet cannot attach'),
        refused: true,
      },
    ]);
    // watch's stderr does not advise add-iface for them (it refuses them): it says what works.
    expect(run.stderr).toContain(
      'vcnet: watch leaves mvt0 alone: mvt0 is a macvtap, which vcnet cannot attach in a user namespace other than the initial one (add-iface refuses it too): give the pod a veth or macvlan instead, which model tcfilter connects\n',
    );
    expect(run.stderr).toContain(
      'vcnet: watch ended without attaching mvt1: mvt1 is a macvtap, which vcnet cannot attach',
    );
    expect(run.stderr).not.toContain('`vcnet add-iface p FILE` attaches');
    // Only the tcfilter attach of eth0 made anything: its tap (removed by the detach after).
    const names = (links ?? '').match(/^\d+: (\S+?)[@:]/gm)?.map((line) => line.replace(/^\d+: |[@:]$/g, ''));
    expect(names?.sort()).toEqual(['eth0', 'lo', 'mvt0', 'mvt1', 'peer0', 'tap0_kata']);
  }, 60_000);

  it('vcnet-cni ADD with model macvtap is refused (code 7) before its state directory is made', () => {
    const stateDir = join(directory, 'cni');
    const config = JSON.stringify(
      vcnetCniAlone({
        name: 'userns',
        namespacePath: '/placeholder',
        address: '10.77.0.2/24',
        gateway: '10.77.0.1',
        settings: { model: 'macvtap', stateDir },
      }),
    );
    const refused = inUserNamespace(
      'CNI_COMMAND=ADD CNI_CONTAINERID=userns CNI_NETNS=$NS CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni "$NODE" "$CNI_MAIN"',
      config,
    );
    expect(refused.status).toBe(1);
    const error = JSON.parse(refused.stdout) as { code: number; msg: string; details: string };
    expect(error.code).toBe(7);
    expect(error.msg).toContain('invalid model: "macvtap"');
    expect(error.details).toContain('use model tcfilter in a user namespace');
    expect(existsSync(stateDir)).toBe(false);
  }, 60_000);
});
