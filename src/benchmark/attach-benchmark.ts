/**
 * The tcfilter attach/detach benchmark: N endpoints in a namespace this benchmark makes and deletes,
 * done by vcnet and, in the same run, by iproute2 processes (ip, tc), K times each. Reports the
 * median per endpoint. Detach by vcnet deletes all taps with one group request (one RCU grace period).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { NetlinkHandle } from '../netlink/handle.js';
import { createNamespace, deleteNamespace } from '../netns/namespace.js';
import { randomPrivateMacAddress } from '../network/mac-address.js';
import { attachMacvtap } from '../network/models/macvtap.js';
import { attachTapOnly } from '../network/models/none.js';
import type { PlumbingContext } from '../network/models/plumbing-context.js';
import { attachTcFilter } from '../network/models/tcfilter.js';
import { type PlumbingStep, undoPlumbing } from '../network/plumbing.js';

export interface AttachBenchmarkOptions {
  endpoints: number;
  iterations: number;
  model?: 'tcfilter' | 'macvtap' | 'none';
  /** Also time the same sequence with iproute2 processes (tcfilter only). */
  baseline?: boolean;
}

export interface AttachBenchmarkResult {
  model: string;
  endpoints: number;
  iterations: number;
  attach_us: number;
  detach_us: number;
  iproute2_attach_us?: number;
  iproute2_detach_us?: number;
  attach_ratio?: number;
  detach_ratio?: number;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const now = () => Number(process.hrtime.bigint()) / 1000;

function iproute2(namespace: string, tool: 'ip' | 'tc', args: string[]): void {
  execFileSync(tool, ['-n', namespace, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The tcfilter attach of one endpoint done the way a shell script would: one ip/tc process per step. */
export function iproute2TcFilterAttach(namespace: string, source: string, tap: string): void {
  iproute2(namespace, 'ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr']);
  iproute2(namespace, 'ip', ['link', 'set', tap, 'mtu', '1500', 'up']);
  iproute2(namespace, 'tc', ['qdisc', 'add', 'dev', source, 'ingress']);
  iproute2(namespace, 'tc', ['qdisc', 'add', 'dev', tap, 'ingress']);
  const redirect = (from: string, to: string) =>
    iproute2(namespace, 'tc', [
      'filter',
      'add',
      'dev',
      from,
      'parent',
      'ffff:',
      'protocol',
      'all',
      'u32',
      'match',
      'u8',
      '0',
      '0',
      'action',
      'mirred',
      'egress',
      'redirect',
      'dev',
      to,
    ]);
  redirect(source, tap);
  redirect(tap, source);
}

export async function runAttachBenchmark(options: AttachBenchmarkOptions): Promise<AttachBenchmarkResult> {
  const model = options.model ?? 'tcfilter';
  const name = `vcnet-bench-${randomBytes(4).toString('hex')}`;
  const path = createNamespace(name);
  const handle = NetlinkHandle.open(path);
  try {
    const sources = [];
    for (let i = 0; i < options.endpoints; i++) {
      await handle.addLink({ name: `eth${i}`, up: true, data: { kind: 'veth', peer: { name: `peer${i}` } } });
      sources.push(await handle.linkByName(`eth${i}`));
    }
    const attachTimes: number[] = [];
    const detachTimes: number[] = [];
    for (let iteration = 0; iteration < options.iterations; iteration++) {
      const context: PlumbingContext = {
        handle,
        namespacePath: path,
        queues: 1,
        keepFds: false,
        vhostNet: 'off',
        qdiscs: (await handle.snapshot()).qdiscs,
      };
      const steps: PlumbingStep[] = [];
      const started = now();
      for (const [i, source] of sources.entries()) {
        const tap = `tap${i}_kata`;
        const attached =
          model === 'tcfilter'
            ? await attachTcFilter(context, source, tap)
            : model === 'macvtap'
              ? await attachMacvtap(context, source, tap, randomPrivateMacAddress())
              : await attachTapOnly(context, tap, { mtu: source.mtu });
        steps.push(...attached.steps);
      }
      const attached = now();
      const report = await undoPlumbing(handle, steps);
      const detached = now();
      if (report.failures.length > 0) throw report.failures[0];
      attachTimes.push((attached - started) / options.endpoints);
      detachTimes.push((detached - attached) / options.endpoints);
      // macvtap moved the sources' MACs and addresses: they are restored by the undo above.
      if (model === 'macvtap') for (const [i] of sources.entries()) sources[i] = await handle.linkByName(`eth${i}`);
    }
    const result: AttachBenchmarkResult = {
      model,
      endpoints: options.endpoints,
      iterations: options.iterations,
      attach_us: Math.round(median(attachTimes)),
      detach_us: Math.round(median(detachTimes)),
    };
    if (options.baseline !== false && model === 'tcfilter') {
      const baselineAttach: number[] = [];
      const baselineDetach: number[] = [];
      for (let iteration = 0; iteration < options.iterations; iteration++) {
        const started = now();
        for (let i = 0; i < options.endpoints; i++) iproute2TcFilterAttach(name, `eth${i}`, `tap${i}_kata`);
        const attached = now();
        for (let i = 0; i < options.endpoints; i++) {
          iproute2(name, 'tc', ['qdisc', 'del', 'dev', `eth${i}`, 'ingress']);
          iproute2(name, 'ip', ['link', 'del', `tap${i}_kata`]);
        }
        const detached = now();
        baselineAttach.push((attached - started) / options.endpoints);
        baselineDetach.push((detached - attached) / options.endpoints);
      }
      result.iproute2_attach_us = Math.round(median(baselineAttach));
      result.iproute2_detach_us = Math.round(median(baselineDetach));
      result.attach_ratio = Number((result.iproute2_attach_us / Math.max(1, result.attach_us)).toFixed(1));
      result.detach_ratio = Number((result.iproute2_detach_us / Math.max(1, result.detach_us)).toFixed(1));
    }
    return result;
  } finally {
    handle.close();
    deleteNamespace(path);
  }
}
