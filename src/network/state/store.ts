/**
 * Sandbox state on disk: <stateDir>/<sandbox id>/state.json, written atomically (temp file, fsync,
 * rename, fsync of the directory) and changed under a lock so two vcnet processes never change one
 * sandbox at once.
 *
 * The lock is a file created with O_EXCL holding the owner's pid. Hand-written rather than
 * proper-lockfile: that library decides staleness by mtime (10 s by default), while a pid check
 * frees the lock of a process killed with -9 at once, which is exactly the crash case vcnet cares about.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { InvalidInputError, VcnetError } from '../../errors.js';
import { anyObject, readRecord } from './records.js';

/** Which record a file holds: its schema and the version this vcnet reads. */
export interface RecordKind {
  schema: z.ZodType;
  version: number;
}

export const DEFAULT_STATE_DIRECTORY = '/run/vcnet/sandboxes';
const SANDBOX_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function stateDirectory(explicit?: string): string {
  return explicit ?? process.env.VCNET_STATE_DIR ?? DEFAULT_STATE_DIRECTORY;
}

export function validateSandboxId(id: string): string {
  if (!SANDBOX_ID_PATTERN.test(id)) {
    throw new InvalidInputError(
      'sandbox',
      id,
      'letters, digits, "_", "." and "-", starting with a letter or digit, at most 128',
    );
  }
  return id;
}

export class SandboxLockedError extends VcnetError {
  constructor(id: string, owner: number) {
    super('VCNET_SANDBOX_LOCKED', `sandbox ${id} is being changed by process ${owner}`, {
      value: owner,
      hint: 'wait for the other vcnet command to finish, or pass a longer --lock-timeout',
    });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class SandboxStore {
  readonly directory: string;

  constructor(
    readonly id: string,
    root = stateDirectory(),
  ) {
    validateSandboxId(id);
    this.directory = join(root, id);
  }

  get statePath(): string {
    return join(this.directory, 'state.json');
  }

  private get lockPath(): string {
    return join(this.directory, 'lock');
  }

  /**
   * The record, checked against its schema (network/state/records.ts) when one is given; undefined
   * when there is none. A damaged record throws StateRecordError naming the file and field.
   */
  read<T>(kind?: RecordKind): T | undefined {
    if (kind) return readRecord<T>(this.statePath, kind.schema, kind.version);
    return readRecord<T>(this.statePath, anyObject, Number.NaN, { versionless: true });
  }

  write(state: unknown): void {
    mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    const temporary = join(this.directory, `.state.${process.pid}.tmp`);
    const fd = openSync(temporary, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, this.statePath);
    const directoryFd = openSync(this.directory, 'r');
    try {
      fsyncSync(directoryFd);
    } finally {
      closeSync(directoryFd);
    }
  }

  /** Removes the sandbox's state directory (after a complete detach). */
  remove(): void {
    rmSync(this.directory, { recursive: true, force: true });
  }

  private tryLock(): number | undefined {
    mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    try {
      const fd = openSync(this.lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let owner = Number.NaN;
    try {
      owner = Number(readFileSync(this.lockPath, 'utf8'));
    } catch {
      return this.tryLock();
    }
    if (!Number.isInteger(owner) || owner <= 0 || !processAlive(owner)) {
      // The owner died (kill -9, crash): the lock is stale.
      try {
        unlinkSync(this.lockPath);
      } catch {
        // someone else removed it first
      }
      return this.tryLock();
    }
    return owner;
  }

  /** Runs `work` holding the sandbox lock; waits up to `timeoutMs` for another process to finish. */
  async withLock<T>(work: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const owner = this.tryLock();
      if (owner === undefined) break;
      if (Date.now() >= deadline) throw new SandboxLockedError(this.id, owner);
      await sleep(25);
    }
    try {
      return await work();
    } finally {
      try {
        unlinkSync(this.lockPath);
      } catch {
        // the directory may have been removed by a complete detach
      }
      // A lock taken for a sandbox that has no state (detach of an unknown id) leaves nothing behind.
      try {
        rmdirSync(this.directory);
      } catch {
        // not empty: the sandbox's state is there
      }
    }
  }
}
