/**
 * A tcfilter pod attached by a build before the txqueuelen fix (b514d1e, session 15), detached by
 * this one. The pod veth had no transmit queue (txqueuelen 0, as CNI's bridge and ptp make it); the
 * old attach's ingress qdisc gave it the kernel's 1000, and its record says nothing of that but the
 * length it scanned before attach. This build's detach and CNI DEL put 0 back.
 *
 * The records are a015099's, as its `vcnet attach` and vcnet-cni ADD wrote them
 * (test/fixtures/state/tcfilter-*-a015099.json). This build attaches the same pod (the same tap,
 * qdiscs and filters), the old record takes the place of its own (with the namespace identity,
 * ifindexes and MACs of this pod), and the queue is 1000 as the old attach left it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vcnet } from '../../helpers/cli.js';
import { CniRuntime, missingCniPlugins, vcnetCniAlone } from '../../helpers/cni.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const skipReason = process.getuid?.() !== 0 ? 'needs root (namespaces, taps, tc)' : missingCniPlugins(['host-local']);
if (skipReason) console.log(`skipping older-build queue length tests: ${skipReason}`);

// biome-ignore lint/suspicious/noExplicitAny: records are patched as plain JSON
type Json = any;

function fixture(name: string): Json {
  return JSON.parse(readFileSync(fileURLToPath(new URL(`../../fixtures/state/${name}`, import.meta.url)), 'utf8'));
}

/**
 * The old record for this pod: its plumbing and fields as the old build wrote them; the envelope,
 * the scanned pod link and the tap's index and MACs from the record this build just wrote for the
 * same pod (they differ from pod to pod, not from build to build).
 */
function oldRecordFor(old: Json, current: Json): Json {
  const record = structuredClone(old);
  record.id = current.id;
  record.namespace = current.namespace;
  record.createdAt = current.createdAt;
  record.network.config.namespacePath = current.network.config.namespacePath;
  if (current.device) record.device = current.device;
  const [endpoint] = record.network.endpoints;
  const [now] = current.network.endpoints;
  expect(endpoint.version).toBe(1);
  expect(endpoint.properties.link.txQueueLength).toBe(0);
  expect(endpoint.plumbing.steps.map((step: Json) => step.step)).not.toContain('change-link');
  endpoint.properties = now.properties;
  const eth0 = now.properties.link.index;
  for (const step of endpoint.plumbing.steps) if (step.index !== undefined) step.index = eth0;
  endpoint.plumbing.tapIndex = now.plumbing.tapIndex;
  endpoint.plumbing.guestHardwareAddress = now.plumbing.guestHardwareAddress;
  endpoint.pair.tap.guestHardwareAddress = now.pair.tap.guestHardwareAddress;
  endpoint.pair.virtualInterface.hardwareAddress = now.pair.virtualInterface.hardwareAddress;
  return record;
}

function queueLength(pod: TestNamespace): number {
  const [link] = pod.ipJson<Array<{ txqlen?: number }>>('link', 'show', 'eth0');
  return link?.txqlen ?? 0;
}

/** The pod as the old attach left it: this build's plumbing, the kernel's queue of 1000 kept. */
function asOldAttachLeftIt(pod: TestNamespace, file: string, old: Json): void {
  const current = JSON.parse(readFileSync(file, 'utf8'));
  writeFileSync(file, JSON.stringify(oldRecordFor(old, current), null, 2));
  expect(queueLength(pod)).toBe(0);
  pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '1000']);
}

/**
 * A pod whose veth has no transmit queue (`before`: its fingerprint then), attached by `vcnet attach`
 * (sandbox `old`, state directory `state`) and left as the old attach left it.
 */
function podAttachedByOldBuild(): { pod: TestNamespace; before: ReturnType<typeof fingerprint>; state: string } {
  const { pod } = makePod();
  pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '0']);
  const before = fingerprint(pod);
  const state = join(work, 'state');
  const attach = vcnet([
    'attach',
    '--state-dir',
    state,
    '--sandbox',
    'old',
    '--netns',
    pod.path,
    '--model',
    'tcfilter',
  ]);
  expect(attach.status, attach.stderr).toBe(0);
  asOldAttachLeftIt(pod, join(state, 'old', 'state.json'), fixture('tcfilter-attach-a015099.json'));
  return { pod, before, state };
}

let work: string;
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'vcnet-older-qlen-'));
});
afterEach(() => {
  cleanupNamespaces();
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skipReason)('a tcfilter record of a build before the txqueuelen fix', () => {
  it('vcnet detach (and its dry run) puts the pod veth back to txqueuelen 0', () => {
    const { pod, before, state } = podAttachedByOldBuild();

    const dryRun = vcnet(['detach', '--state-dir', state, '--sandbox', 'old', '--dry-run']);
    expect(dryRun.status, dryRun.stderr).toBe(0);
    expect(dryRun.stdout).toContain('ip link set dev eth0 txqueuelen 0');
    const detach = vcnet(['detach', '--state-dir', state, '--sandbox', 'old']);
    expect(detach.status, detach.stderr).toBe(0);
    expect(queueLength(pod)).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('vcnet-cni DEL puts the pod veth back to txqueuelen 0', () => {
    const { pod, node } = makePod();
    pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '0']);
    const before = fingerprint(pod);
    const stateDir = join(work, 'cni');
    const runtime = new CniRuntime(node, { containerId: 'old', namespacePath: pod.path, interfaceName: 'eth0' });
    const config = vcnetCniAlone({
      name: 'oldnet',
      namespacePath: pod.path,
      settings: { model: 'tcfilter', stateDir },
    });
    const add = runtime.invoke('ADD', config);
    expect(add.status, add.stderr + add.stdout).toBe(0);
    const file = join(stateDir, 'old', 'interfaces', 'eth0', 'state.json');
    asOldAttachLeftIt(pod, file, fixture('tcfilter-cni-add-a015099.json'));

    const del = runtime.invoke('DEL', config);
    expect(del.status, del.stderr + del.stdout).toBe(0);
    expect(queueLength(pod)).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('leaves a queue length changed since the old attach, and says so', () => {
    const { pod, state } = podAttachedByOldBuild();
    // Someone gave the link a queue of their own after the old attach: it is theirs.
    pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '500']);
    const detach = vcnet(['detach', '--state-dir', state, '--sandbox', 'old']);
    expect(detach.status, detach.stderr).toBe(0);
    expect(detach.stderr + detach.stdout).toMatch(/transmit queue length of eth0 as it is \(500\)/);
    expect(queueLength(pod)).toBe(500);
  });
});
