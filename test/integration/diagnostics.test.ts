/**
 * The diagnostics channels on a real attach and detach (a CNI-like pod namespace made for the test):
 * a subscriber sees the scan, the attach, one event per endpoint with its tap, the netlink batches
 * and the detach, each settled.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { channels, DiagnosticsChannel, type PlanStepEvent, tracing } from '../../src/diagnostics.js';
import { attachSandbox } from '../../src/sandbox/attach.js';
import { detachSandbox } from '../../src/sandbox/detach.js';
import { planSandboxAttach } from '../../src/sandbox/plan.js';
import { cleanupNamespaces } from '../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../helpers/pod.js';

type Seen = { channel: string; event: string; fields: Record<string, unknown> };

function record(seen: Seen[]): () => void {
  const unsubscribers: Array<() => void> = [];
  for (const key of Object.keys(tracing) as Array<keyof typeof tracing>) {
    const operation = tracing[key] as (typeof tracing)['scan'];
    const note = (event: string) => (fields: object) =>
      seen.push({ channel: DiagnosticsChannel[key], event, fields: { ...fields } });
    const handlers = {
      start: note('start'),
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: note('asyncEnd'),
      error: note('error'),
    };
    operation.subscribe(handlers);
    unsubscribers.push(() => operation.unsubscribe(handlers));
  }
  return () => {
    for (const unsubscribe of unsubscribers) unsubscribe();
  };
}

describe('diagnostics channels on a real attach', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
    cleanupNamespaces();
  });

  it('publish scan, attach, endpoint, netlink batch and detach events, each settled', async () => {
    const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-diagnostics-'));
    cleanups.push(() => rmSync(stateDirectory, { recursive: true, force: true }));
    const { pod } = makePod();
    const config = tcfilterConfig(pod);
    // What --dry-run prints, before anyone listens (the plan scans too).
    const planned = await planSandboxAttach(config, 'diag');
    const seen: Seen[] = [];
    cleanups.push(record(seen));
    const steps: PlanStepEvent[] = [];
    const onStep = (message: unknown) => steps.push(message as PlanStepEvent);
    channels.planStep.subscribe(onStep);
    cleanups.push(() => channels.planStep.unsubscribe(onStep));
    await attachSandbox('diag', config, { stateDirectory });
    await detachSandbox('diag', { stateDirectory });

    // One plan-step event per step: the attach's as --dry-run prints them, then the detach's.
    const applied = steps.filter((step) => step.phase === 'apply');
    expect(applied.map((step) => step.step)).toEqual(planned.endpoints.flatMap((endpoint) => endpoint.commands));
    expect(applied.every((step) => step.namespacePath === pod.path && step.error === undefined)).toBe(true);
    expect(steps.filter((step) => step.phase === 'undo').length).toBeGreaterThan(0);
    expect(steps.slice(applied.length).every((step) => step.phase === 'undo')).toBe(true);

    const of = (channel: string, event: string) =>
      seen.filter((entry) => entry.channel === channel && entry.event === event).map((entry) => entry.fields);
    expect(of('vcnet:attach', 'start')).toEqual([
      { sandbox: 'diag', namespacePath: pod.path, model: 'tcfilter', hotplug: false },
    ]);
    expect(of('vcnet:scan', 'asyncEnd')).toEqual([
      expect.objectContaining({ namespacePath: pod.path, result: expect.anything() }),
    ]);
    expect(of('vcnet:attach:endpoint', 'asyncEnd')).toEqual([
      { sandbox: 'diag', namespacePath: pod.path, endpoint: 'eth0', endpointType: 'virtual', result: 'tap0_kata' },
    ]);
    expect(of('vcnet:detach', 'asyncEnd')).toEqual([
      expect.objectContaining({
        sandbox: 'diag',
        endpoints: ['eth0'],
        result: expect.objectContaining({ failures: [] }),
      }),
    ]);
    const batches = of('vcnet:netlink:batch', 'asyncEnd');
    expect(batches.length).toBeGreaterThan(1);
    for (const batch of batches) {
      expect(batch).toMatchObject({ namespacePath: pod.path, requests: expect.any(Number) });
      expect(batch.requests as number).toBeGreaterThan(0);
    }
    // Every operation that started also settled.
    for (const channel of Object.values(DiagnosticsChannel)) {
      expect(of(channel, 'asyncEnd').length, channel).toBe(of(channel, 'start').length);
    }
    expect(of('vcnet:attach', 'error')).toEqual([]);
  });
});
