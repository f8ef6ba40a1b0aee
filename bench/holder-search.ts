/**
 * `npm run bench:holders`: what looking for a namespace's holders costs on this machine when nothing
 * holds it (the case gc, list and detach pay in full before they call a namespace gone): the search
 * without the sockets and taps (/var/run/netns, every process's and thread's ns/net, nsfs mounts, nsfs
 * fds: the baseline), and with them (each socket and tun fd of every process copied with pidfd_getfd
 * and asked its namespace). Alternated in one run. `--extra P,S` first starts P processes that each
 * hold S sockets (a busy node); `--runs N` (default 15). Prints medians; asserts nothing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { median } from '../src/benchmark/attach-benchmark.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';
import { NamespaceHolders } from '../src/netns/namespace-holders.js';
import { processIds } from '../src/netns/processes.js';

const argument = (name: string) => {
  const index = process.argv.indexOf(name);
  return index < 0 ? undefined : process.argv[index + 1];
};
const runs = Number(argument('--runs') ?? 15);
const [extraProcesses, socketsEach] = (argument('--extra') ?? '0,0').split(',').map(Number) as [number, number];
const log = (text: string) => process.stdout.write(`${text}\n`);
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Processes, fds and, of those, sockets and tun fds, as /proc shows them now. */
function census(): { processes: number; fds: number; devices: number } {
  let fds = 0;
  let devices = 0;
  const pids = processIds();
  for (const pid of pids) {
    let names: string[];
    try {
      names = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    fds += names.length;
    for (const name of names) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${name}`);
        if (target.startsWith('socket:[') || target === '/dev/net/tun') devices++;
      } catch {
        // closed meanwhile
      }
    }
  }
  return { processes: pids.length, fds, devices };
}

/** P processes each holding S UDP sockets, resolved once they all hold them. */
async function startSocketHolders(count: number, sockets: number): Promise<ChildProcess[]> {
  const script = `import socket, sys, time\nheld = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(${sockets})]\nprint('ready', flush=True)\ntime.sleep(3600)`;
  const children: ChildProcess[] = [];
  for (let i = 0; i < count; i++) {
    const child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    await new Promise<void>((ready) => child.stdout?.once('data', () => ready()));
  }
  return children;
}

async function main(): Promise<void> {
  const extra = extraProcesses > 0 ? await startSocketHolders(extraProcesses, socketsEach) : [];
  // A namespace that existed and is gone: nothing holds its identity, so every step of the search runs.
  const path = createNamespace(`bench-holders-${process.pid}`);
  const { statSync } = await import('node:fs');
  const { dev, ino } = statSync(path);
  deleteNamespace(path);
  try {
    const seen = census();
    log(
      `this machine now: ${seen.processes} processes, ${seen.fds} fds, ${seen.devices} of them sockets or tun fds${extra.length > 0 ? ` (with ${extraProcesses} extra processes holding ${socketsEach} sockets each)` : ''}`,
    );
    const without: number[] = [];
    const withDevices: number[] = [];
    let asked = 0;
    for (let run = 0; run < runs; run++) {
      // Alternated, so that a busy moment of the machine falls on both alike.
      let started = now();
      const baseline = new NamespaceHolders({ devices: false });
      if (baseline.of({ dev, ino }).length > 0) throw new Error('the gone namespace is held: not a fair measure');
      without.push(now() - started);
      started = now();
      const full = new NamespaceHolders();
      if (full.of({ dev, ino }).length > 0) throw new Error('the gone namespace is held: not a fair measure');
      withDevices.push(now() - started);
      asked = full.devicesAsked;
    }
    const base = median(without);
    const total = median(withDevices);
    log(`holder search of a gone namespace, median of ${runs}:`);
    log(`  without sockets and taps (baseline): ${base.toFixed(1)} ms`);
    log(
      `  with sockets and taps:               ${total.toFixed(1)} ms (+${(total - base).toFixed(1)} ms for ${asked} sockets and tun fds asked: ${(((total - base) / Math.max(asked, 1)) * 1000).toFixed(1)} µs each)`,
    );
  } finally {
    for (const child of extra) child.kill('SIGKILL');
  }
}

await main();
