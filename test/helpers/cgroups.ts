/**
 * Cgroup filesystems for container runtimes under test. runc (under containerd's shim, and under
 * podman) needs them at /sys/fs/cgroup; a chroot whose /sys was bound without its submounts (CI's
 * fresh root, ../shared/tools/fresh-machine-check) has an empty directory there. Then the runtimes
 * run inside the private mount namespace of a helper process that mounts the hierarchies the kernel
 * has: the tests' own mount namespace gets no mount, and every mount goes away with the helper's
 * namespace once its last process has exited.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Whether a mountinfo text has a cgroup (v1 or v2) filesystem at or below /sys/fs/cgroup. */
function hasCgroupMount(mountinfo: string): boolean {
  return mountinfo.split('\n').some((line) => {
    const [mountFields, superFields] = line.split(' - ');
    const mountPoint = mountFields?.split(' ')[4];
    const type = superFields?.split(' ')[0];
    return (
      (type === 'cgroup' || type === 'cgroup2') &&
      (mountPoint === CGROUP_ROOT || Boolean(mountPoint?.startsWith(`${CGROUP_ROOT}/`)))
    );
  });
}

/**
 * Whether the kernel's controllers live on v1 hierarchies: /proc/cgroups gives an enabled
 * controller's hierarchy id, 0 when it is on none (cgroup2, or unused).
 */
function controllersOnV1(): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/cgroups', 'utf8');
  } catch {
    return false; // kernels without cgroup v1 support may not have the file
  }
  return table
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split('\t'))
    .some((fields) => fields[3] === '1' && fields[1] !== '0');
}

/**
 * The v1 hierarchies, as mount options (`cpu,cpuacct`, `name=systemd`), from /proc/self/cgroup:
 * unlike /proc/cgroups it also lists named hierarchies and which controllers share one. Mounting
 * with the same option set attaches to the existing hierarchy.
 */
function v1Hierarchies(): string[] {
  return readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .filter(([id, controllers]) => id !== undefined && id !== '0' && Boolean(controllers))
    .map(([, controllers]) => controllers!);
}

/**
 * A shell script mounting what a host of this kernel has at /sys/fs/cgroup: when controllers are on
 * v1 hierarchies, a tmpfs holding one directory per hierarchy (named like systemd does, with a link
 * per controller of a shared one), else the unified hierarchy, cgroup2, there.
 */
function mountScript(): string {
  if (!controllersOnV1()) return `set -e\nmount -t cgroup2 cgroup2 ${CGROUP_ROOT}`;
  const hierarchies = v1Hierarchies();
  const lines = ['set -e', `mount -t tmpfs -o mode=755 tmpfs ${CGROUP_ROOT}`];
  for (const options of hierarchies) {
    // The names go into a shell script: the kernel's are plain words, anything else is refused.
    if (!/^[\w=,.-]+$/.test(options)) throw new Error(`unexpected cgroup hierarchy in /proc/self/cgroup: ${options}`);
    const controllers = options.split(',').map((option) => option.replace(/^name=/, ''));
    const directory = `${CGROUP_ROOT}/${controllers.join(',')}`;
    lines.push(`mkdir ${directory}`, `mount -t cgroup -o ${options} cgroup ${directory}`);
    if (controllers.length > 1) {
      for (const controller of controllers) lines.push(`ln -s ${controllers.join(',')} ${CGROUP_ROOT}/${controller}`);
    }
  }
  return lines.join('\n');
}

const UNSHARE = ['--mount', '--propagation', 'private'];

export interface CgroupPlan {
  /** Why runtimes cannot get cgroups here: the tests must skip. */
  skip?: string;
  /** The script the helper's namespace runs, when /sys/fs/cgroup has nothing mounted. */
  script?: string;
}

/**
 * What runtimes need for cgroups here: nothing when /sys/fs/cgroup has them, else the helper's
 * script, tried once now in a throwaway mount namespace so a failure is a skip with its reason.
 */
export function planCgroups(): CgroupPlan {
  if (hasCgroupMount(readFileSync('/proc/self/mountinfo', 'utf8'))) return {};
  const missing = `no cgroup filesystem is mounted at ${CGROUP_ROOT} (e.g. a chroot whose /sys was bound without its submounts)`;
  let script: string;
  try {
    script = mountScript();
  } catch (error) {
    return { skip: `${missing}, and ${(error as Error).message}` };
  }
  const trial = spawnSync('unshare', [...UNSHARE, 'sh', '-c', `${script}\ncat /proc/self/mountinfo`], {
    encoding: 'utf8',
  });
  if (trial.status === 0 && hasCgroupMount(trial.stdout)) return { script };
  const why = trial.error?.message ?? (trial.stderr.trim() || `exit status ${trial.status}, nothing mounted`);
  return { skip: `${missing}, and mounting them in a private mount namespace failed: ${why}` };
}

/** The mount namespace identity of a process (`mnt:[4026531840]`), if it still exists. */
function mountNamespaceOf(pid: string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/**
 * A process holding a private mount namespace with cgroup filesystems mounted; it lives until its
 * stdin closes, so it also ends when the test process dies.
 */
export class CgroupMountNamespace {
  private constructor(
    private readonly helper: ChildProcess,
    private readonly exited: Promise<void>,
    private readonly namespace: string,
  ) {}

  static async start(script: string): Promise<CgroupMountNamespace> {
    const helper = spawn('unshare', [...UNSHARE, 'sh', '-c', `${script}\necho ready\nread -r line || :`], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    helper.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<void>((resolve) => helper.on('close', () => resolve()));
    const ready = await new Promise<boolean>((resolve) => {
      helper.stdout?.on('data', (chunk) => {
        if (String(chunk).includes('ready')) resolve(true);
      });
      void exited.then(() => resolve(false));
    });
    const namespace = ready ? mountNamespaceOf(String(helper.pid)) : undefined;
    if (!namespace) {
      helper.stdin?.end();
      await exited;
      throw new Error(`the cgroup mount namespace helper failed: ${stderr.trim()}`);
    }
    return new CgroupMountNamespace(helper, exited, namespace);
  }

  /**
   * nsenter options entering the helper's mount namespace, its root directory and its working
   * directory: setns alone would put the command at the namespace's real root, outside a chroot the
   * tests run in, and so would its working directory without --wd (nsenter opens "." after setns),
   * where conmon's getcwd() fails ("Failed to get working directory").
   */
  get nsenterOptions(): string[] {
    return ['--target', String(this.helper.pid), '--mount', '--root', '--wd'];
  }

  /** Processes still in the namespace (other than the helper). */
  private remaining(): number[] {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== this.helper.pid)
      .filter((pid) => mountNamespaceOf(pid) === this.namespace)
      .map(Number);
  }

  /**
   * Ends the helper once the runtimes' processes have left the namespace (up to `graceMs`), then
   * kills whatever is still there so its mounts go too; returns those leftovers (which must be none).
   */
  async stop(graceMs = 30_000): Promise<number[]> {
    const deadline = Date.now() + graceMs;
    let left = this.remaining();
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      left = this.remaining();
    }
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.helper.stdin?.end();
    await this.exited;
    return left;
  }
}

/** `command args` as run inside `namespace` (when there is one), after nsenter's own `options`. */
export function inNamespaces(
  namespace: CgroupMountNamespace | undefined,
  command: string,
  args: string[],
  options: string[] = [],
): [string, string[]] {
  const nsenter = [...options, ...(namespace?.nsenterOptions ?? [])];
  return nsenter.length === 0 ? [command, args] : ['nsenter', [...nsenter, '--', command, ...args]];
}
