/**
 * GetIPTables and SetIPTables in the guest, as Kata's agent serves them: iptables-save (ip6tables-save)
 * prints the rules; iptables-restore --wait 5 (ip6tables-restore) reads the rules on stdin and replaces
 * the tables they name, and what it prints is the answer. A program that is not on PATH is named
 * (VCNET_GUEST_PROGRAM_MISSING, NOT_FOUND on the wire); one that fails is quoted with its stderr
 * (VCNET_IPTABLES_FAILED, INTERNAL, as Kata's agent answers).
 *
 * With `namespacePath` (the agent run on a host in tests, --netns) the programs run in that namespace
 * through `nsenter --net=PATH`: never in the namespace of the agent's own process.
 */
import { spawn } from 'node:child_process';
import { findProgram } from '../../program-search.js';
import { GuestProgramMissingError, IpTablesCommandError } from '../errors.js';
import type { IpTablesApplier, IpVersion } from '../network-applier.js';
import { MAX_FRAME_LENGTH } from '../ttrpc/frame.js';

/** Kata's agent gives iptables-restore `--wait 5`: how long it waits for the xtables lock, in seconds. */
const IPTABLES_RESTORE_WAIT_SECONDS = 5;
/** A program that runs longer is killed and the call fails. */
const IPTABLES_RUN_TIMEOUT_MS = 30_000;
/** PATH when the agent has none: the guest's init sets this one. */
const DEFAULT_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
/** What fits in one answer: ttrpc frames carry at most 4 MiB, the response wrapping included. */
const MAX_OUTPUT_BYTES = MAX_FRAME_LENGTH - 4096;

const INSTALL_HINT =
  'install the iptables package in the guest image (iptables-save and iptables-restore; ip6tables-save and ip6tables-restore for IPv6)';

export interface GuestIpTablesOptions {
  /** Run the programs in this network namespace (nsenter --net=PATH); default: the agent's own. */
  namespacePath?: string;
  /** Where programs are looked for; default the agent's PATH, else /usr/sbin:/usr/bin:/sbin:/bin. */
  path?: string;
  timeoutMs?: number;
}

export class GuestIpTables implements IpTablesApplier {
  private readonly namespacePath: string | undefined;
  private readonly path: string;
  private readonly timeoutMs: number;

  constructor(options: GuestIpTablesOptions = {}) {
    this.namespacePath = options.namespacePath;
    this.path = options.path ?? (process.env.PATH || DEFAULT_PATH);
    this.timeoutMs = options.timeoutMs ?? IPTABLES_RUN_TIMEOUT_MS;
  }

  async getIpTables(version: IpVersion): Promise<Uint8Array> {
    return this.run(version === 6 ? 'ip6tables-save' : 'iptables-save', [], undefined);
  }

  async setIpTables(version: IpVersion, rules: Uint8Array): Promise<Uint8Array> {
    return this.run(
      version === 6 ? 'ip6tables-restore' : 'iptables-restore',
      ['--wait', String(IPTABLES_RESTORE_WAIT_SECONDS)],
      rules,
    );
  }

  private resolve(name: string, hint: string): string {
    const found = findProgram(name, this.path.split(':'));
    if (!found) throw new GuestProgramMissingError(name, this.path, hint);
    return found;
  }

  private run(program: string, args: string[], input: Uint8Array | undefined): Promise<Uint8Array> {
    const binary = this.resolve(program, INSTALL_HINT);
    const [command, commandArgs] = this.namespacePath
      ? [
          this.resolve('nsenter', 'install util-linux (nsenter runs the program in the namespace the agent serves)'),
          [`--net=${this.namespacePath}`, '--', binary, ...args],
        ]
      : [binary, args];
    return new Promise((resolve, reject) => {
      const child = spawn(command, commandArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let stdoutBytes = 0;
      let failure: string | undefined;
      const stop = (reason: string) => {
        failure ??= reason;
        child.kill('SIGKILL');
      };
      const timer = setTimeout(() => stop(`did not finish in ${this.timeoutMs} ms`), this.timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        stdoutBytes += chunk.length;
        if (stdoutBytes > MAX_OUTPUT_BYTES)
          stop(`printed more than ${MAX_OUTPUT_BYTES} bytes, more than one answer carries`);
        else stdout.push(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (stderr.reduce((total, part) => total + part.length, 0) < 64 * 1024) stderr.push(chunk);
      });
      // A program that exits before reading all of stdin (refused rules) closes the pipe: its exit says why.
      child.stdin.on('error', () => undefined);
      child.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (error.code === 'ENOENT') reject(new GuestProgramMissingError(command, this.path, INSTALL_HINT));
        else reject(new IpTablesCommandError(program, `could not be started: ${error.message}`, '', null, error));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const said = Buffer.concat(stderr).toString('utf8');
        if (failure) reject(new IpTablesCommandError(program, failure, said, code));
        else if (code !== 0)
          reject(new IpTablesCommandError(program, signal ? `killed by ${signal}` : `exit ${code}`, said, code));
        else resolve(new Uint8Array(Buffer.concat(stdout)));
      });
      child.stdin.end(input === undefined ? undefined : Buffer.from(input.buffer, input.byteOffset, input.byteLength));
    });
  }
}
