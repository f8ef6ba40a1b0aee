/**
 * What the rate-limit VM tests share: iperf3 from a test namespace against the guest's server, the
 * htb classes vcnet put on a link, and raising them far above the limit for the same run's
 * unlimited measurement (the proof that the guest goes faster than the limit at all).
 */
import { execFile, execFileSync } from 'node:child_process';
import type { TestNamespace } from './namespace.js';

/**
 * iperf3 from `namespace` to the guest's server at `address` for `seconds`: the bits/s the receiver
 * counted, towards the guest, or from it with `reverse`. The guest's one server takes a moment under
 * TCG before it accepts the next test: up to three tries.
 */
export function iperf(namespace: string, address: string, reverse: boolean, seconds = 4): number {
  let lastFailure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    let stdout = '';
    try {
      stdout = execFileSync(
        'ip',
        [
          ...['netns', 'exec', namespace, 'iperf3', '-c', address, '-t', String(seconds), '-J'],
          ...(reverse ? ['-R'] : []),
        ],
        { encoding: 'utf8', timeout: (seconds + 30) * 1000, stdio: ['ignore', 'pipe', 'pipe'] },
      );
    } catch (error) {
      // iperf3 -J reports its own errors in the JSON on stdout, and exits 1.
      stdout = String((error as { stdout?: string }).stdout ?? '');
      lastFailure = String((error as { message?: string }).message);
    }
    try {
      const result = JSON.parse(stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
      const received = result.end?.sum_received?.bits_per_second;
      if (received !== undefined) return received;
      lastFailure = result.error ?? 'no end.sum_received.bits_per_second in its JSON';
    } catch {
      // not JSON: lastFailure holds the exec error
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  }
  throw new Error(`iperf3 ${reverse ? 'from' : 'to'} the guest ${address} gave no result in 3 tries: ${lastFailure}`);
}

/** What one iperf3 client's -J output says the receiver counted, or why there is no such number. */
function receivedBits(stdout: string): number | string {
  try {
    const result = JSON.parse(stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
    return (
      result.end?.sum_received?.bits_per_second ?? result.error ?? 'no end.sum_received.bits_per_second in its JSON'
    );
  } catch {
    return `not JSON: ${stdout.slice(0, 200)}`;
  }
}

/** One iperf3 client run, its stdout whether it exits 0 or not (iperf3 -J reports its errors there). */
function iperfClient(namespace: string, address: string, port: number, reverse: boolean, seconds: number) {
  return new Promise<string>((resolve) => {
    execFile(
      'ip',
      [
        ...['netns', 'exec', namespace, 'iperf3', '-c', address, '-p', String(port), '-t', String(seconds), '-J'],
        ...(reverse ? ['-R'] : []),
      ],
      { encoding: 'utf8', timeout: (seconds + 30) * 1000 },
      (error, stdout) => resolve(stdout || String(error?.message ?? '')),
    );
  });
}

/**
 * iperf3 clients run at once from `namespace`, one to each guest server `port` (each server pinned to
 * its own guest vCPU, so each flow leaves the guest through that vCPU's queue): the bits/s the
 * receivers counted, summed. Up to three tries, as iperf().
 */
export async function iperfFlows(
  namespace: string,
  address: string,
  ports: readonly number[],
  reverse: boolean,
  seconds = 4,
): Promise<number> {
  let lastFailure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const results = (
      await Promise.all(ports.map((port) => iperfClient(namespace, address, port, reverse, seconds)))
    ).map(receivedBits);
    const failure = results.find((result) => typeof result === 'string');
    if (failure === undefined) return (results as number[]).reduce((sum, bits) => sum + bits, 0);
    lastFailure = failure as string;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(
    `iperf3 ${reverse ? 'from' : 'to'} the guest ${address} ports ${ports.join(', ')} gave no result in 3 tries: ${lastFailure}`,
  );
}

export const mbps = (bits: number) => `${(bits / 1e6).toFixed(1)} Mbit/s`;

/** `rate R ceil R` as tc prints an htb class of `bitsPerSecond` (a whole number of Mbit/s). */
export const htbRate = (bitsPerSecond: number) => `rate ${bitsPerSecond / 1e6}Mbit ceil ${bitsPerSecond / 1e6}Mbit`;

/** Each htb class on `device` as tc prints it: class id to `rate R ceil C` (tc -j prints no classes). */
export function htbClasses(pod: TestNamespace, device: string): Record<string, string> {
  const lines = pod.exec('tc', ['class', 'show', 'dev', device]).split('\n');
  return Object.fromEntries(
    lines.flatMap((line) => {
      const found = /^class htb (\S+) .*?(rate \S+ ceil \S+)/.exec(line);
      return found ? [[found[1], found[2]]] : [];
    }),
  );
}

/** Raises both classes of vcnet's htb tree (1:1 and 1:2 under it) on each device to 10 Gbit/s. */
export function raiseHtbClasses(pod: TestNamespace, devices: string[]): void {
  for (const device of devices) {
    for (const [classId, parent] of [
      ['1:1', '1:'],
      ['1:2', '1:1'],
    ] as const) {
      pod.exec('tc', [
        ...['class', 'change', 'dev', device, 'parent', parent, 'classid', classId],
        ...['htb', 'rate', '10gbit', 'ceil', '10gbit'],
      ]);
    }
  }
}
