/**
 * `npm run bench`: vcnet against an iproute2 baseline measured in the same run, on this machine.
 * Prints medians and ratios; asserts nothing (speed is not a test).
 *   1. tcfilter attach/detach of 1 and 8 endpoints (vcnet vs ip/tc processes), and the attach's kernel
 *      floor (time inside the tap ioctls and the netlink sendto/recv, from the native shim), with the
 *      same attach written in C (bench/c/tcfilter-attach.c) as the lower reference
 *   2. attach+detach of 1 and 8 endpoints per model
 *   3. scan of 1/16/256 interfaces (vcnet vs ip -j addr/route/neigh)
 *   4. 100 sandboxes (namespaces) attached and detached concurrently
 *   5. with a real VM (QEMU, TCG): hot-plug latency split into host and guest parts, and guest
 *      throughput through tcfilter vs macvtap (iperf3; TCG keeps absolute numbers low, compare ratios)
 *   6. process start: `vcnet --version`, `vcnet-cni` VERSION, a `vcnet attach` + `detach` and a
 *      `vcnet-cni` ADD + DEL (given the previous plugin's result) as processes, against `node -e 0`
 *      and against importing the library's modules one file each
 * 7. `vcnet list` with 1, 10 and 50 records, against `vcnet --version` in the same loop
 * `npm run bench -- --quick` does fewer iterations; `--no-vm` skips section 5; `--only <section>`
 * runs one (attach, scan, concurrent, vm, startup, list); `--json` prints one JSON object at the end.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { iproute2TcFilterAttach, median, runAttachBenchmark } from '../src/benchmark/attach-benchmark.js';
import { demoUnavailableReason, mbps, runDemo } from '../src/demo/scenario.js';
import { NetlinkHandle } from '../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';
import { Network } from '../src/network/network.js';
import { scanNamespace } from '../src/network/scan.js';
import { cAttachUnavailableReason, runCAttachReference } from './c-attach-reference.js';

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const results: Record<string, unknown> = {};
const now = () => Number(process.hrtime.bigint()) / 1000;
const log = (text: string) => process.stdout.write(`${text}\n`);

function fillNamespace(name: string, count: number, peerNamespace: string): void {
  const commands = [];
  for (let i = 0; i < count; i++) commands.push(`link add eth${i} type veth peer name p${i} netns ${peerNamespace}`);
  for (let i = 0; i < count; i++)
    commands.push(`link set eth${i} up`, `addr add 10.${Math.floor(i / 250)}.${i % 250}.2/16 dev eth${i}`);
  execFileSync('ip', ['-n', name, '-batch', '-'], { input: `${commands.join('\n')}\n` });
}

async function attachSection(): Promise<void> {
  log('\n== tcfilter attach/detach, median µs per endpoint (vcnet vs iproute2 processes, same run) ==');
  for (const endpoints of [1, 8]) {
    const result = await runAttachBenchmark({ endpoints, iterations: quick ? 5 : 20 });
    results[`tcfilter_${endpoints}`] = result;
    log(
      `${endpoints} endpoint(s): attach ${result.attach_us} µs vs ${result.iproute2_attach_us} µs (${result.attach_ratio}x faster), ` +
        `detach ${result.detach_us} µs vs ${result.iproute2_detach_us} µs (${result.detach_ratio}x faster); ` +
        `kernel floor ${result.floor_us} µs (attach ${result.floor_ratio}x; CPU ${result.attach_cpu_us}/${result.floor_cpu_us} µs, ${result.floor_cpu_ratio}x)`,
    );
  }
  const reason = cAttachUnavailableReason();
  if (reason) log(`C reference skipped: ${reason}`);
  else {
    // The same attach with no language runtime around the syscalls: what the floor ratio can come down to.
    const reference = await runCAttachReference(quick ? 5 : 20);
    results.tcfilter_1_c_reference = reference;
    const vcnet = results.tcfilter_1 as { floor_ratio: number };
    log(
      `the same attach in C (bench/c/tcfilter-attach.c): ${reference.attach_us} µs, kernel floor ${reference.floor_us} µs ` +
        `(attach ${reference.floor_ratio}x; outside the floor ${reference.outside_floor_us.syscalls} µs in syscalls, ` +
        `${reference.outside_floor_us.other} µs else); vcnet ${vcnet.floor_ratio}x in this run`,
    );
  }
  log('\n== attach+detach per model, median µs per endpoint ==');
  for (const model of ['tcfilter', 'macvtap', 'none'] as const) {
    for (const endpoints of [1, 8]) {
      const result = await runAttachBenchmark({ endpoints, iterations: quick ? 3 : 10, model, baseline: false });
      results[`model_${model}_${endpoints}`] = result;
      log(`${model.padEnd(8)} ${endpoints} endpoint(s): attach ${result.attach_us} µs, detach ${result.detach_us} µs`);
    }
  }
}

async function scanSection(): Promise<void> {
  log('\n== scan, median µs (vcnet one batched snapshot vs ip -j addr + route + neigh) ==');
  for (const count of [1, 16, 256]) {
    const name = `vcnet-bench-scan-${randomBytes(3).toString('hex')}`;
    const peer = `${name}-peer`;
    const path = createNamespace(name);
    createNamespace(peer);
    try {
      fillNamespace(name, count, peer);
      const handle = NetlinkHandle.open(path);
      const ours: number[] = [];
      const theirs: number[] = [];
      let found = 0;
      for (let i = 0; i < (quick ? 5 : 15); i++) {
        let started = now();
        found = (await scanNamespace(handle)).interfaces.length;
        ours.push(now() - started);
        started = now();
        for (const what of ['addr', 'route', 'neigh'])
          execFileSync('ip', ['-n', name, '-j', what, 'show'], { maxBuffer: 64 << 20 });
        theirs.push(now() - started);
      }
      handle.close();
      const result = { interfaces: found, vcnet_us: Math.round(median(ours)), iproute2_us: Math.round(median(theirs)) };
      results[`scan_${count}`] = result;
      log(
        `${String(count).padStart(3)} interfaces: vcnet ${result.vcnet_us} µs, iproute2 ${result.iproute2_us} µs (${(result.iproute2_us / result.vcnet_us).toFixed(1)}x)`,
      );
    } finally {
      deleteNamespace(name);
      deleteNamespace(peer);
    }
  }
}

async function concurrentSection(): Promise<void> {
  const count = quick ? 20 : 100;
  log(`\n== ${count} sandboxes attached concurrently (one veth each, tcfilter) ==`);
  const prefix = `vcnet-bench-c${randomBytes(3).toString('hex')}`;
  const paths: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const path = createNamespace(`${prefix}-${i}`);
      paths.push(path);
      const handle = NetlinkHandle.open(path);
      await handle.addLink({ name: 'eth0', up: true, data: { kind: 'veth', peer: { name: 'peer0' } } });
      await handle.addAddress({
        index: (await handle.linkByName('eth0')).index,
        address: '10.9.0.2',
        prefixLength: 24,
      });
      handle.close();
    }
    const networks = paths.map((path, i) =>
      Network.open(
        {
          namespacePath: path,
          model: 'tcfilter',
          namespaceCreatedByVcnet: false,
          disableNewNetns: false,
          queues: 1,
          vhostNet: 'off',
        },
        `s${i}`,
      ),
    );
    let started = now();
    await Promise.all(networks.map((network) => network.addEndpoints({ interfaces: undefined })));
    const attachUs = now() - started;
    started = now();
    await Promise.all(networks.map((network) => network.removeEndpoints()));
    const detachUs = now() - started;
    for (const network of networks) network.close();
    // Baseline: the same attach for 10 sandboxes by iproute2 processes, scaled to the count.
    const sample = Math.min(10, count);
    started = now();
    for (let i = 0; i < sample; i++) iproute2TcFilterAttach(`${prefix}-${i}`, 'eth0', 'tap0_kata');
    const baselineUs = ((now() - started) / sample) * count;
    const result = {
      sandboxes: count,
      attach_ms: Math.round(attachUs / 1000),
      detach_ms: Math.round(detachUs / 1000),
      iproute2_attach_ms_estimated: Math.round(baselineUs / 1000),
    };
    results.concurrent = result;
    log(
      `attach all: ${result.attach_ms} ms, detach all: ${result.detach_ms} ms; iproute2 attach (sequential, ${sample} measured, scaled): ${result.iproute2_attach_ms_estimated} ms (${(result.iproute2_attach_ms_estimated / Math.max(1, result.attach_ms)).toFixed(1)}x)`,
    );
  } finally {
    for (const path of paths) deleteNamespace(path);
  }
}

async function virtualMachineSection(): Promise<void> {
  const unavailable =
    demoUnavailableReason() ??
    (existsSync('/usr/bin/qemu-system-x86_64') ? undefined : 'qemu-system-x86_64 is missing');
  if (unavailable) {
    log(`\n== VM section skipped: ${unavailable} ==`);
    return;
  }
  log('\n== real VM (QEMU, TCG): hot-plug latency and guest throughput, tcfilter vs macvtap ==');
  const byModel: Record<string, Awaited<ReturnType<typeof runDemo>>> = {};
  for (const model of ['tcfilter', 'macvtap'] as const) {
    const result = await runDemo({ model, iperfSeconds: quick ? 2 : 5 });
    byModel[model] = result;
    log(
      `${model.padEnd(8)} hot-plug: host ${result.hotplug.hostMs.toFixed(1)} ms (plumbing + QMP), guest ${result.hotplug.guestMs.toFixed(1)} ms (agent); ` +
        `iperf3 to guest ${mbps(result.traffic.iperfToGuestBitsPerSecond)}, from guest ${mbps(result.traffic.iperfFromGuestBitsPerSecond)}; ping ${result.traffic.pingAverageMs} ms`,
    );
  }
  const ratio = (a?: number, b?: number) => (a && b ? (a / b).toFixed(2) : 'n/a');
  const tcfilter = byModel.tcfilter!;
  const macvtap = byModel.macvtap!;
  log(
    `macvtap / tcfilter throughput: to guest ${ratio(macvtap.traffic.iperfToGuestBitsPerSecond, tcfilter.traffic.iperfToGuestBitsPerSecond)}x, ` +
      `from guest ${ratio(macvtap.traffic.iperfFromGuestBitsPerSecond, tcfilter.traffic.iperfFromGuestBitsPerSecond)}x`,
  );
  results.vm = Object.fromEntries(
    Object.entries(byModel).map(([model, result]) => [
      model,
      {
        hotplug_host_ms: result.hotplug.hostMs,
        hotplug_guest_ms: result.hotplug.guestMs,
        iperf_to_guest_bps: result.traffic.iperfToGuestBitsPerSecond,
        iperf_from_guest_bps: result.traffic.iperfFromGuestBitsPerSecond,
      },
    ]),
  );
}

/** Wall time of one process run, ms. */
function processMs(command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): number {
  const started = now();
  execFileSync(command, args, { stdio: ['pipe', 'ignore', 'pipe'], ...options });
  return (now() - started) / 1000;
}

async function startupSection(): Promise<void> {
  log('\n== process start, median ms (the programs are one bundled file each; node -e 0 is Node alone) ==');
  const root = fileURLToPath(new URL('..', import.meta.url));
  const cli = join(root, 'dist', 'cli', 'main.js');
  const cni = join(root, 'dist', 'cni', 'main.js');
  if (!existsSync(cli) || !existsSync(cni)) {
    log('startup section skipped: dist/ is not built (npm run build)');
    return;
  }
  const library = join(root, 'dist', 'index.js');
  const name = `vcnet-bench-start-${randomBytes(3).toString('hex')}`;
  const path = createNamespace(name);
  const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-bench-state-'));
  try {
    execFileSync('ip', ['-n', name, '-batch', '-'], {
      input: 'link add eth0 type veth peer name peer0\nlink set eth0 up\naddr add 10.9.0.2/24 dev eth0\n',
    });
    const samples: Record<string, number[]> = {
      node: [],
      library_import: [],
      cli_version: [],
      cni_version: [],
      cli_attach_detach: [],
      cni_add_del: [],
    };
    const cniEnvironment = { ...process.env, CNI_COMMAND: 'VERSION' };
    // vcnet-cni chained after a plugin that gave the pod eth0 and its address (what bridge would pass on).
    const cniConfig = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'bench',
      type: 'vcnet-cni',
      stateDir: join(stateDirectory, 'cni'),
      prevResult: {
        cniVersion: '1.0.0',
        interfaces: [{ name: 'eth0', sandbox: path }],
        ips: [{ address: '10.9.0.2/24', interface: 0 }],
      },
    });
    const cniRun = (command: 'ADD' | 'DEL') =>
      execFileSync(process.execPath, [cni], {
        input: cniConfig,
        env: {
          ...process.env,
          CNI_COMMAND: command,
          CNI_CONTAINERID: 'bench',
          CNI_NETNS: path,
          CNI_IFNAME: 'eth0',
          CNI_PATH: '/usr/lib/cni',
        },
        stdio: ['pipe', 'ignore', 'pipe'],
      });
    for (let i = 0; i < (quick ? 3 : 10); i++) {
      samples.node!.push(processMs(process.execPath, ['-e', '0']));
      samples.library_import!.push(
        processMs(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(library)})`]),
      );
      samples.cli_version!.push(processMs(process.execPath, [cli, '--version']));
      samples.cni_version!.push(processMs(process.execPath, [cni], { input: '{}', env: cniEnvironment }));
      const started = now();
      execFileSync(
        process.execPath,
        [cli, 'attach', '--sandbox', 'bench', '--netns', path, '--state-dir', stateDirectory],
        {
          stdio: 'ignore',
        },
      );
      execFileSync(process.execPath, [cli, 'detach', '--sandbox', 'bench', '--state-dir', stateDirectory], {
        stdio: 'ignore',
      });
      samples.cli_attach_detach!.push((now() - started) / 1000);
      const added = now();
      cniRun('ADD');
      cniRun('DEL');
      samples.cni_add_del!.push((now() - added) / 1000);
    }
    const result = Object.fromEntries(
      Object.entries(samples).map(([key, values]) => [`${key}_ms`, Math.round(median(values))]),
    ) as Record<string, number>;
    results.startup = result;
    log(
      `node -e 0 ${result.node_ms} ms; vcnet --version ${result.cli_version_ms} ms; vcnet-cni VERSION ${result.cni_version_ms} ms; ` +
        `import of the library (one module per file) ${result.library_import_ms} ms; ` +
        `vcnet attach + detach (1 endpoint, two processes) ${result.cli_attach_detach_ms} ms; ` +
        `vcnet-cni ADD + DEL (two processes) ${result.cni_add_del_ms} ms`,
    );
  } finally {
    rmSync(stateDirectory, { recursive: true, force: true });
    deleteNamespace(path);
  }
}

/**
 * `vcnet list` against the number of records it reads: each record's namespace is found by identity
 * (one socket opened in it for its cookie), so the cost grows with the records. The baseline is
 * `vcnet --version` in the same loop: what a process costs before it reads any record.
 */
async function listSection(): Promise<void> {
  log('\n== vcnet list, median ms per run, by records (each a sandbox attached by `vcnet attach`) ==');
  const cli = join(fileURLToPath(new URL('..', import.meta.url)), 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) {
    log('list section skipped: dist/ is not built (npm run build)');
    return;
  }
  const prefix = `vcnet-bench-l${randomBytes(3).toString('hex')}`;
  const stateDirectory = mkdtempSync(join(tmpdir(), 'vcnet-bench-list-'));
  const paths: string[] = [];
  const rows: Array<Record<string, number>> = [];
  try {
    for (const count of quick ? [1, 10] : [1, 10, 50]) {
      while (paths.length < count) {
        const i = paths.length;
        const path = createNamespace(`${prefix}-${i}`);
        paths.push(path);
        execFileSync('ip', ['-n', `${prefix}-${i}`, '-batch', '-'], {
          input: 'link add eth0 type veth peer name peer0\nlink set eth0 up\naddr add 10.9.0.2/24 dev eth0\n',
        });
        execFileSync(
          process.execPath,
          [cli, 'attach', '--sandbox', `s${i}`, '--netns', path, '--state-dir', stateDirectory],
          { stdio: 'ignore' },
        );
      }
      const list: number[] = [];
      const version: number[] = [];
      for (let run = 0; run < (quick ? 3 : 7); run++) {
        version.push(processMs(process.execPath, [cli, '--version']));
        list.push(processMs(process.execPath, [cli, 'list', '--json', '--state-dir', stateDirectory]));
      }
      const listMs = median(list);
      const versionMs = median(version);
      const row = {
        records: count,
        list_ms: Math.round(listMs),
        version_ms: Math.round(versionMs),
        per_record_ms: Number(((listMs - versionMs) / count).toFixed(2)),
      };
      rows.push(row);
      log(
        `${String(count).padStart(3)} record(s): vcnet list ${row.list_ms} ms, vcnet --version ${row.version_ms} ms; ` +
          `${row.per_record_ms} ms per record above the process start`,
      );
    }
    results.list = rows;
  } finally {
    for (const [i] of paths.entries()) {
      try {
        execFileSync(process.execPath, [cli, 'detach', '--sandbox', `s${i}`, '--state-dir', stateDirectory], {
          stdio: 'ignore',
        });
      } catch {
        // The namespace goes below, and its taps with it; the state directory too.
      }
    }
    for (const path of paths) deleteNamespace(path);
    rmSync(stateDirectory, { recursive: true, force: true });
  }
}

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const sections: Array<[string, () => Promise<void>]> = [
  ['attach', attachSection],
  ['scan', scanSection],
  ['concurrent', concurrentSection],
  ['vm', virtualMachineSection],
  ['startup', startupSection],
  ['list', listSection],
];
if (only !== undefined && !sections.some(([name]) => name === only)) {
  throw new Error(`--only ${only}: not a section (${sections.map(([name]) => name).join(', ')})`);
}
for (const [name, run] of sections) {
  if (only !== undefined ? name !== only : name === 'vm' && process.argv.includes('--no-vm')) continue;
  await run();
}
if (json) log(JSON.stringify(results));
