/**
 * The lower reference for `vcnet bench attach`'s floor ratio: the same tcfilter attach of one
 * endpoint written directly in C (bench/c/tcfilter-attach.c), compiled with the machine's C compiler
 * and run in a namespace of its own in the same benchmark run. The floor says what the kernel spends;
 * this says what an attach costs when no language runtime adds anything to it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NetlinkHandle } from '../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../src/netns/namespace.js';

export interface CAttachResult {
  iterations: number;
  attach_us: number;
  floor_us: number;
  floor_ratio: number;
  syscalls_us: Record<string, number>;
  outside_floor_us: { syscalls: number; other: number };
}

const SOURCE = fileURLToPath(new URL('./c/tcfilter-attach.c', import.meta.url));

/** Why the C reference cannot run here, or undefined when it can. */
export function cAttachUnavailableReason(): string | undefined {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'no C compiler (cc) on PATH';
  }
}

/**
 * Compiles the C attach, runs `iterations` attaches (each undone) in a fresh namespace, and parses
 * its JSON. `inspect`, when given, runs before the namespace goes, with the last attach kept.
 */
export async function runCAttachReference(
  iterations: number,
  inspect?: (namespacePath: string) => void,
): Promise<CAttachResult> {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-c-attach-'));
  try {
    const program = join(directory, 'tcfilter-attach');
    execFileSync('cc', ['-O2', '-Wall', '-o', program, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
    const path = createNamespace(`vcnet-bench-cref-${randomBytes(3).toString('hex')}`);
    try {
      const handle = NetlinkHandle.open(path);
      try {
        await handle.addLink({ name: 'eth0', up: true, data: { kind: 'veth', peer: { name: 'peer0' } } });
      } finally {
        handle.close();
      }
      const output = execFileSync(program, [path, 'eth0', String(iterations), ...(inspect ? ['keep'] : [])], {
        encoding: 'utf8',
      });
      inspect?.(path);
      return JSON.parse(output) as CAttachResult;
    } finally {
      deleteNamespace(path);
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}
