/**
 * The tcfilter attach/detach benchmark: N endpoints in a namespace this benchmark makes and deletes,
 * done by vcnet and, in the same run, by iproute2 processes (ip, tc), K times each. Reports the
 * median per endpoint. Detach by vcnet deletes all taps with one group request (one RCU grace period).
 *
 * The kernel floor of an attach is measured in the same iterations by the native shim's syscall
 * accounting: the time spent inside the tap ioctls and the netlink sendto/recv calls. No tool can
 * attach for less; `attach_us / floor_us` says how much the rest (JavaScript, other syscalls) adds.
 * The same figures in CPU time of the calling thread (`*_cpu_us`) hold on a loaded machine, where
 * wall time also counts waiting for a CPU. Reading the thread's CPU clock around every syscall costs
 * a syscall itself, so the per-syscall CPU time is counted in every other iteration only, and the
 * attach times come from the iterations in between.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { randomPrivateMacAddress } from '../mac-address.js';
import type { SyscallKind } from '../native/shim-types.js';
import { nativeSyscallTime } from '../native/syscall-time.js';
import { NetlinkHandle } from '../netlink/handle.js';
import { createNamespace, deleteNamespace } from '../netns/namespace.js';
import { attachByPlan, type PlumbingContext } from '../network/model/plumbing-context.js';
import type { PlumbingStep } from '../network/plan/types.js';
import { undoRecords } from '../network/plan/undo.js';
import { iproute2Program } from './iproute2-program.js';

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
  /** Kernel time of the attach per endpoint (median): tap ioctls + netlink sendto/recv. */
  floor_us: number;
  /** attach_us / floor_us: 1 would mean no time outside those syscalls. */
  floor_ratio: number;
  /** The same in CPU time of the thread: attach, floor, ratio (unaffected by waiting for a CPU). */
  attach_cpu_us: number;
  floor_cpu_us: number;
  floor_cpu_ratio: number;
  /**
   * attach_us − floor_us split in two (wall, medians): the accounted syscalls outside the floor
   * (opening and closing /dev/net/tun, the namespace switch) and everything else (JavaScript,
   * N-API crossings, kernel work charged to the thread).
   */
  outside_floor_us: { syscalls: number; other: number };
  /** Median per endpoint of every accounted syscall kind during the attach: wall µs, CPU µs. */
  syscalls_us: Record<SyscallKind, { wall: number; cpu: number }>;
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

/** The syscalls that make up the floor: what the kernel itself spends creating the objects. */
const FLOOR_KINDS: readonly SyscallKind[] = ['tunIoctl', 'netlinkSend', 'netlinkRecv'];

const kindsOutsideFloor = (times: Record<SyscallKind, number>) =>
  (Object.keys(times) as SyscallKind[]).filter((kind) => !FLOOR_KINDS.includes(kind));

/** ip and tc resolved once: the baseline times the programs, not the search for them. */
const iproute2Programs = new Map<'ip' | 'tc', string>();

function iproute2(namespace: string, tool: 'ip' | 'tc', args: string[]): void {
  let program = iproute2Programs.get(tool);
  if (program === undefined) {
    program = iproute2Program(tool);
    iproute2Programs.set(tool, program);
  }
  execFileSync(program, ['-n', namespace, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
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
    /** Per endpoint, µs: wall from the plain iterations, CPU from those that count it. */
    const syscallWall: Array<Record<SyscallKind, number>> = [];
    const syscallCpu: Array<Record<SyscallKind, number>> = [];
    const attachCpuTimes: number[] = [];
    for (let iteration = 0; iteration < options.iterations; iteration++) {
      const context: PlumbingContext = {
        handle,
        namespacePath: path,
        queues: 1,
        keepFds: false,
        vhostNet: 'off',
        qdiscs: (await handle.snapshot(['qdiscs'])).qdiscs,
      };
      const steps: PlumbingStep[] = [];
      const countCpu = options.iterations === 1 || iteration % 2 === 1;
      const plain = options.iterations === 1 || !countCpu;
      nativeSyscallTime.read(countCpu); // resets the counters (and, the first time, switches the accounting on)
      const cpuStarted = nativeSyscallTime.threadCpuNs();
      const started = now();
      for (const [i, source] of sources.entries()) {
        const tap = `tap${i}_kata`;
        const attached = await attachByPlan(
          context,
          model === 'tcfilter'
            ? { model, source, tapName: tap }
            : model === 'macvtap'
              ? { model, source, tapName: tap, spareHardwareAddress: randomPrivateMacAddress() }
              : { model, tapName: tap, mtu: source.mtu },
        );
        steps.push(...attached.steps);
      }
      const attached = now();
      const attachCpu = (nativeSyscallTime.threadCpuNs() - cpuStarted) / 1000 / options.endpoints;
      const spent = Object.entries(nativeSyscallTime.read());
      const perEndpoint = (value: (entry: (typeof spent)[number][1]) => number) =>
        Object.fromEntries(spent.map(([kind, entry]) => [kind, value(entry) / 1000 / options.endpoints])) as Record<
          SyscallKind,
          number
        >;
      if (plain) {
        attachTimes.push((attached - started) / options.endpoints);
        attachCpuTimes.push(attachCpu);
        syscallWall.push(perEndpoint((entry) => entry.ns));
      }
      if (countCpu) syscallCpu.push(perEndpoint((entry) => entry.cpuNs));
      const report = await undoRecords(handle, steps);
      const detached = now();
      if (report.failures.length > 0) throw report.failures[0];
      detachTimes.push((detached - attached) / options.endpoints);
      // macvtap moved the sources' MACs and addresses: they are restored by the undo above.
      if (model === 'macvtap') for (const [i] of sources.entries()) sources[i] = await handle.linkByName(`eth${i}`);
    }
    const kinds = Object.keys(syscallWall[0] ?? {}) as SyscallKind[];
    const floorOf = (samples: Array<Record<SyscallKind, number>>) =>
      median(samples.map((times) => FLOOR_KINDS.reduce((sum, kind) => sum + times[kind], 0)));
    const floor = floorOf(syscallWall);
    const outsideFloorSyscalls = median(
      syscallWall.map((times) => kindsOutsideFloor(times).reduce((sum, kind) => sum + times[kind], 0)),
    );
    const floorCpu = floorOf(syscallCpu);
    const attachUs = median(attachTimes);
    const attachCpuUs = median(attachCpuTimes);
    const result: AttachBenchmarkResult = {
      model,
      endpoints: options.endpoints,
      iterations: options.iterations,
      attach_us: Math.round(attachUs),
      detach_us: Math.round(median(detachTimes)),
      floor_us: Math.round(floor),
      floor_ratio: Number((attachUs / Math.max(1, floor)).toFixed(2)),
      outside_floor_us: {
        syscalls: Math.round(outsideFloorSyscalls),
        other: Math.max(0, Math.round(attachUs - floor - outsideFloorSyscalls)),
      },
      attach_cpu_us: Math.round(attachCpuUs),
      floor_cpu_us: Math.round(floorCpu),
      floor_cpu_ratio: Number((attachCpuUs / Math.max(1, floorCpu)).toFixed(2)),
      syscalls_us: Object.fromEntries(
        kinds.map((kind) => [
          kind,
          {
            wall: Math.round(median(syscallWall.map((times) => times[kind]))),
            cpu: Math.round(median(syscallCpu.map((times) => times[kind]))),
          },
        ]),
      ) as Record<SyscallKind, { wall: number; cpu: number }>,
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
    await handle.close();
    deleteNamespace(path);
  }
}
