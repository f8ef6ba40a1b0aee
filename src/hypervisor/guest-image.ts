/**
 * The test guest: a Debian cloud kernel and a busybox initramfs with node, iperf3 and the guest agent, built by
 * scripts/guest-image into .cache/guest. This module runs that script and composes the kernel command line its
 * /init (scripts/guest/init) understands.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError, VcnetError } from '../errors.js';

export interface GuestImage {
  /** Path of the kernel image (a copy of /boot/vmlinuz-<version>). */
  kernel: string;
  /** Path of the gzip-compressed newc initramfs. */
  initrd: string;
  /** True when this call (re)built the image, false when the cached one was up to date. */
  built: boolean;
  kernelVersion: string;
  initrdBytes: number;
  /**
   * Modules of the guest's `load-modules tunnels` and `load-modules pod` lists that the kernel package
   * lacks (and has not built in): the image is built without them, and `load-modules` refuses their list.
   */
  missingModules: GuestImageMissingModule[];
}

/** A kernel module the guest image lacks, with its list and what it is for. */
export interface GuestImageMissingModule {
  module: string;
  list: 'tunnels' | 'pod';
  purpose: string;
}

export interface EnsureGuestImageOptions {
  /** Rebuild even when the stamp of inputs is unchanged. */
  rebuild?: boolean;
  /** Receives each progress line of the script (without the trailing newline). */
  onProgress?: (line: string) => void;
  /** Output directory; default <repo>/.cache/guest. */
  outputDirectory?: string;
}

/** scripts/guest-image failed or is missing; `hint` carries its last error line (often a package to install). */
export class GuestImageError extends VcnetError {
  static override readonly errorName: string = 'GuestImageError';
  constructor(message: string, options: { value?: unknown; hint?: string; cause?: unknown } = {}) {
    super('VCNET_GUEST_IMAGE', message, options);
  }
}

function repositoryRoot(): string {
  // src/hypervisor/guest-image.ts and dist/hypervisor/guest-image.js both sit two levels below the root.
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let level = 0; level < 4; level++) {
    if (existsSync(join(directory, 'scripts', 'guest-image'))) return directory;
    directory = dirname(directory);
  }
  throw new GuestImageError('scripts/guest-image not found above ' + dirname(fileURLToPath(import.meta.url)), {
    hint: 'the guest image is built from a vcnet source checkout, not from the published package',
  });
}

/** Path of the image builder script. */
function guestImageScript(): string {
  return join(repositoryRoot(), 'scripts', 'guest-image');
}

/**
 * Builds the guest image if any input changed (kernel, node, busybox, iperf3, libraries, agent bundle, the
 * scripts themselves) and returns its paths. The first build copies ~100 MB of node and takes a few seconds.
 */
export async function ensureGuestImage(options: EnsureGuestImageOptions = {}): Promise<GuestImage> {
  const script = guestImageScript();
  const args = options.rebuild ? ['--rebuild'] : [];
  const environment = { ...process.env };
  if (options.outputDirectory !== undefined) environment.VCNET_GUEST_DIR = options.outputDirectory;

  const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: environment });
  let stdout = '';
  let pendingStderr = '';
  const stderrLines: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    pendingStderr += chunk;
    const lines = pendingStderr.split('\n');
    pendingStderr = lines.pop() ?? '';
    for (const line of lines) {
      stderrLines.push(line);
      options.onProgress?.(line);
    }
  });

  const exitCode = await new Promise<number>((resolve, reject) => {
    child.on('error', (error) =>
      reject(
        new GuestImageError(`could not run ${script}: ${error.message}`, { cause: error, hint: 'is bash installed?' }),
      ),
    );
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  if (pendingStderr !== '') {
    stderrLines.push(pendingStderr);
    options.onProgress?.(pendingStderr);
  }

  if (exitCode !== 0) {
    const errorLines = stderrLines.filter((line) => line.startsWith('guest-image: error:'));
    // An error may continue over several lines (esbuild's report): keep from the first error line on.
    const firstError = stderrLines.findIndex((line) => line.startsWith('guest-image: error:'));
    const reason = (firstError >= 0 ? stderrLines.slice(firstError, firstError + 15) : stderrLines.slice(-5)).join(
      '\n',
    );
    throw new GuestImageError(`scripts/guest-image failed (exit ${exitCode}): ${reason}`, {
      value: { exitCode, output: stderrLines.slice(-20) },
      hint: errorLines[0]?.replace(/^guest-image: error: /, '') ?? 'run scripts/guest-image by hand to see why',
    });
  }

  const resultLine = stdout.trim().split('\n').pop() ?? '';
  try {
    const result = JSON.parse(resultLine) as GuestImage;
    if (typeof result.kernel !== 'string' || typeof result.initrd !== 'string' || !Array.isArray(result.missingModules))
      throw new Error('fields missing');
    return result;
  } catch (error) {
    throw new GuestImageError(`scripts/guest-image printed no result line: ${JSON.stringify(resultLine)}`, {
      cause: error,
      hint: 'the last line of its standard output must be the JSON result',
    });
  }
}

export interface GuestKernelCommandLineOptions {
  /** Start the guest agent (vcnet.agent=1). */
  agent?: boolean;
  /** A shell script the guest runs after boot (vcnet.cmd, base64); its status is printed as VCNET-CMD-EXIT <n>. */
  command?: string;
  /** Power the guest off after the command (vcnet.poweroff=1); with QEMU's -no-reboot, QEMU then exits. */
  powerOff?: boolean;
  /** Keep the kernel quiet on the console (default true). */
  quiet?: boolean;
  /** More kernel parameters, appended as they are. */
  extra?: string[];
}

/** x86 COMMAND_LINE_SIZE, including the terminating NUL. */
const KERNEL_COMMAND_LINE_LIMIT = 2048;

/** The kernel command line for the test guest: serial console, no reboot on panic, and the vcnet.* switches. */
export function guestKernelCommandLine(options: GuestKernelCommandLineOptions = {}): string {
  const parameters = ['console=ttyS0'];
  if (options.quiet ?? true) parameters.push('quiet');
  // panic=-1 reboots at once, and QEMU's -no-reboot turns that into an exit instead of a hung guest.
  parameters.push('panic=-1');
  // As Kata's guests: under TCG on a busy host the IO-APIC timer check can see too few ticks and
  // panic the boot ("IO-APIC + timer doesn't work"); the emulated timer is fine, the check is not.
  parameters.push('no_timer_check');
  if (options.agent) parameters.push('vcnet.agent=1');
  if (options.command !== undefined) {
    parameters.push('vcnet.cmd=' + Buffer.from(options.command, 'utf8').toString('base64'));
  }
  if (options.powerOff) parameters.push('vcnet.poweroff=1');
  for (const parameter of options.extra ?? []) {
    if (parameter === '' || /\s/.test(parameter)) {
      throw new InvalidInputError('kernel parameter', parameter, 'a non-empty word without spaces');
    }
    parameters.push(parameter);
  }
  const commandLine = parameters.join(' ');
  if (commandLine.length >= KERNEL_COMMAND_LINE_LIMIT) {
    throw new InvalidInputError(
      'kernel command line length',
      commandLine.length,
      `fewer than ${KERNEL_COMMAND_LINE_LIMIT} characters`,
      'the guest command is base64 in the command line: shorten the script (about 1,400 characters fit)',
    );
  }
  return commandLine;
}
