/**
 * A pod link's name is chosen by whoever owns the pod, and the kernel takes ESC and BEL in it. The
 * CLI's human output (scan's table, attach's endpoint and guest-interface tables) shows such a name
 * with its control characters escaped, as the dry-run `#` lines do; `--json` keeps the name as it is.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-escapes-');

const RED = 'e\x1b[31mRED\x07';
const SHOWN = 'e\\x1b[31mRED\\x07';
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;

describe('link names with terminal escape codes', () => {
  it('are escaped in scan and attach tables, and kept as they are in --json', () => {
    const { pod } = makePod();
    // The tenant's veth pair, one end with the escape codes in its name and an address (an endpoint).
    pod.exec('ip', ['link', 'add', RED, 'type', 'veth', 'peer', 'name', 'tenant1']);
    pod.exec('ip', ['addr', 'add', '10.240.0.1/24', 'dev', RED]);
    pod.exec('ip', ['link', 'set', RED, 'up']);
    pod.exec('ip', ['link', 'set', 'tenant1', 'up']);

    const scan = vcnet(['scan', '--netns', pod.path]);
    expect(scan.status, scan.stderr).toBe(0);
    expect(scan.stdout).not.toMatch(CONTROL);
    expect(scan.stdout).toContain(SHOWN);
    const json = vcnet(['scan', '--netns', pod.path, '--json']);
    expect((JSON.parse(json.stdout) as Array<{ name: string }>).map((entry) => entry.name)).toContain(RED);

    const attach = vcnet(['attach', '--sandbox', 'esc', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attach.status, attach.stderr).toBe(0);
    expect(attach.stdout).not.toMatch(CONTROL);
    expect(attach.stderr).not.toMatch(CONTROL);
    // POD IF in the endpoint table, DEVICE in the guest-interface table (the guest keeps the name).
    expect(attach.stdout.split('\n').filter((line) => line.includes(SHOWN)).length).toBeGreaterThanOrEqual(2);
    expect(vcnet(['detach', '--sandbox', 'esc', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('leave attach --dry-run as printf escapes that sh (dash) turns back into the name', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', RED, 'type', 'veth', 'peer', 'name', 'tenant1']);
    pod.exec('ip', ['addr', 'add', '10.240.0.1/24', 'dev', RED]);
    pod.exec('ip', ['link', 'set', RED, 'up']);

    const dry = vcnet([
      'attach',
      '--dry-run',
      '--sandbox',
      'esc',
      '--netns',
      pod.path,
      '--state-dir',
      stateDirectory(),
    ]);
    expect(dry.status, dry.stderr).toBe(0);
    // Shown on a terminal instead of piped to sh, the plan cannot drive it.
    expect(dry.stdout).not.toMatch(CONTROL);
    expect(dry.stdout).toContain(`'e'"$(printf '\\033')"'[31mRED'"$(printf '\\007')"`);
    execFileSync('ip', ['netns', 'exec', pod.name, 'sh', '-e'], { input: dry.stdout, encoding: 'utf8' });
    // The redirect the plan adds sits on the very link with the escape codes in its name.
    expect(pod.exec('tc', ['filter', 'show', 'dev', RED, 'ingress'])).toMatch(
      /mirred \(Egress Redirect to device [^)]*\)/,
    );
  });
});
