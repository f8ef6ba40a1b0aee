/**
 * `vcnet watch` stopped by a service manager (TERM) or a closed terminal (HUP): what changed during
 * the debounce is applied before it ends, and a link it will never attach is named when it starts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const stateDirectory = stateDirectoryPerTest('vcnet-watch-stop-');

/** A veth `name` in the pod (its peer in the node namespace), up, with `address`. */
function addAddressedLink(pod: TestNamespace, node: TestNamespace, name: string, address: string): void {
  node.exec('ip', ['link', 'add', `p${name}`, 'type', 'veth', 'peer', 'name', name, 'netns', pod.name]);
  pod.exec('ip', ['addr', 'add', address, 'dev', name]);
  pod.exec('ip', ['link', 'set', name, 'up']);
}

describe('watch stopped during its debounce', () => {
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(`${signal}: attaches the link added just before, exits 0, and named the link it leaves alone`, async () => {
      const { pod, node } = makePod();
      const state = ['--state-dir', stateDirectory()];
      expect(vcnet(['attach', '--sandbox', 'ws', '--netns', pod.path, ...state]).status).toBe(0);
      addAddressedLink(pod, node, 'eth7', '10.77.0.2/24');
      // A debounce far longer than the test: only the stop can apply the change.
      const watch = vcnetAsync(['watch', '--sandbox', 'ws', '--debounce', '60000', ...state]);
      await until(() => watch.output().stderr.includes('watching sandbox ws'), 'watch to start', 15_000);
      expect(watch.output().stderr).toContain('watch leaves eth7 alone');
      expect(watch.output().stderr).toContain('vcnet add-iface ws');
      addAddressedLink(pod, node, 'eth8', '10.88.0.2/24');
      watch.child.kill(signal);
      const result = await watch.done;
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toContain('"added":["eth8"]');
      const listed = vcnet(['list-ifaces', 'ws', '--json', ...state]);
      expect(listed.stdout).toContain('"eth8"');
      expect(listed.stdout).not.toContain('"eth7"');
      expect(vcnet(['detach', '--sandbox', 'ws', ...state]).status).toBe(0);
    }, 60_000);
  }
});

describe('watch stopped as soon as it says it is watching', () => {
  it('SIGINT right after "watching sandbox" stops it as Ctrl-C does (exit 0), not by the default action', async () => {
    const { pod } = makePod();
    const state = ['--state-dir', stateDirectory()];
    expect(vcnet(['attach', '--sandbox', 'wi', '--netns', pod.path, ...state]).status).toBe(0);
    // What a busy machine may do: stop the process right after its write of that line, and run the
    // reader, who sends the signal at once. A preload holds the process there for a while.
    const preload = join(stateDirectory(), 'hold-after-watching.mjs');
    writeFileSync(
      preload,
      `const write = process.stderr.write.bind(process.stderr);
       process.stderr.write = (chunk, ...rest) => {
         const written = write(chunk, ...rest);
         if (String(chunk).includes('watching sandbox')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
         return written;
       };\n`,
    );
    const watch = vcnetAsync(['watch', '--sandbox', 'wi', '--debounce', '50', ...state], {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`.trim(),
    });
    try {
      await until(() => watch.output().stderr.includes('watching sandbox wi'), 'watch to start', 15_000);
      watch.child.kill('SIGINT');
      const result = await watch.done;
      expect(result.status, `${result.stderr} (signal ${watch.child.signalCode})`).toBe(0);
    } finally {
      watch.child.kill('SIGKILL');
    }
    expect(vcnet(['detach', '--sandbox', 'wi', ...state]).status).toBe(0);
  }, 60_000);
});

describe('watch and links attach skipped', () => {
  it('attaches a link whose only address was link-local once it gets one, and names no unaddressed link as left alone', async () => {
    const { pod, node } = makePod();
    const state = ['--state-dir', stateDirectory()];
    // Up with a carrier: the kernel gives it an IPv6 link-local address, as it does every such link.
    node.exec('ip', ['link', 'add', 'peth5', 'type', 'veth', 'peer', 'name', 'eth5', 'netns', pod.name]);
    node.exec('ip', ['link', 'set', 'peth5', 'up']);
    pod.exec('ip', ['link', 'set', 'eth5', 'up']);
    // A bridge that is up (link-local too) and has no address of its own either.
    pod.exec('ip', ['link', 'add', 'br5', 'type', 'bridge']);
    pod.exec('ip', ['link', 'set', 'br5', 'up']);
    await until(
      () => pod.ipJson<unknown[]>('-6', 'addr', 'show', 'dev', 'eth5', 'scope', 'link').length > 0,
      'the link-local address of eth5',
      15_000,
    );
    const attach = vcnet(['attach', '--sandbox', 'wl', '--netns', pod.path, ...state]);
    expect(attach.status, attach.stderr).toBe(0);
    expect(attach.stderr).toContain('skipped eth5 (kind veth): no address');
    addAddressedLink(pod, node, 'eth6', '10.66.0.2/24');
    const watch = vcnetAsync(['watch', '--sandbox', 'wl', '--debounce', '100', ...state]);
    try {
      await until(() => watch.output().stderr.includes('watching sandbox wl'), 'watch to start', 15_000);
      const started = watch.output().stderr;
      expect(started).toContain('watch leaves eth6 alone');
      expect(started).not.toMatch(/watch leaves .*(eth5|br5)/);
      pod.exec('ip', ['addr', 'add', '10.221.0.2/24', 'dev', 'eth5']);
      await until(() => watch.output().stdout.includes('"added":["eth5"]'), 'watch to attach eth5', 15_000);
    } finally {
      watch.child.kill('SIGTERM');
      await watch.done;
    }
    expect(vcnet(['detach', '--sandbox', 'wl', ...state]).status).toBe(0);
  }, 60_000);
});
