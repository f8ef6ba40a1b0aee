/**
 * What vcnet-cni records between ADD and DEL/CHECK, one record per container and interface so that
 * several chains on one pod (eth0, net1...) never share one:
 *
 *   <stateDir>/.locks/<container id>                         flock held while any command changes the container
 *   <stateDir>/<container id>/interfaces/<ifname>/state.json
 *
 * One lock per container (not per interface) because the chains of one pod pick tap names in the
 * same namespace: two ADDs at once must not both pick tap0_kata.
 */
import { accessSync, constants, existsSync, readdirSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { errnoOf } from '../errors.js';
import type { NamespaceIdentity } from '../netns/namespace-identity.js';
import type { NetworkState } from '../network/network.js';
import {
  checkDirectoryCanBeMade,
  DirectoryNotMadeError,
  makeDirectory,
  removeMadeDirectories,
} from '../network/state/directory.js';
import { cniContentSchema } from '../network/state/network-content-schema.js';
import { damagedRecordText, RECORD_VERSION } from '../network/state/record-envelope.js';
import { LOCK_DIRECTORY_NAME, SandboxStore } from '../network/state/store.js';
import { refuseUntrustedDirectory, StateDirectoryError } from '../network/state/trust.js';
import { INTERFACE_NAME_ACCEPTED, interfaceNameProblem } from './config.js';
import { CniConfigError, CniEnvironmentError } from './errors.js';

export const CNI_STATE_VERSION = RECORD_VERSION;

/** The setting with which vcnet-cni is given another state directory (not the CLI's --state-dir). */
const CNI_STATE_DIR_SETTING = '"stateDir" in the plugin\'s network configuration';

/** A stateDir that cannot be used: the setting vcnet-cni takes. */
const CNI_STATE_DIR_HINT = `point ${CNI_STATE_DIR_SETTING} at a directory vcnet can create and write (default /run/vcnet/cni)`;

/** A record left after a complete undo (its directory could not be removed): what drops it. */
const CNI_REMOVE_AGAIN = "the runtime's next DEL of the container drops it";

/** SandboxLockedError's (and NamespaceBusyError's) hint for vcnet-cni: the setting that exists there. */
export const CNI_LOCK_TIMEOUT_HINT = 'raise "lockTimeoutMs" in the plugin\'s network configuration';

export interface AttachedDevice {
  /** The tap (tcfilter, none) or macvtap the VM uses. */
  name: string;
  mac: string;
  kind: 'tap' | 'macvtap';
}

export interface CniAttachmentState {
  version: typeof CNI_STATE_VERSION;
  /** The container id (the envelope's id). */
  id: string;
  /** The namespace at ADD, by path and identity: DEL and CHECK never touch another namespace that reuses the path. */
  namespace: NamespaceIdentity;
  createdAt: string;
  /** The boot ADD ran in (boot-id.ts); absent in records of older builds. */
  bootId?: string;
  interfaceName: string;
  networkName: string;
  /** Missing while ADD is under way. */
  device?: AttachedDevice;
  network: NetworkState;
}

/**
 * Makes the state directory and its lock directory, or says why `stateDir` cannot be used: a
 * config error naming the field, the value and the OS's reason (ENOTDIR, EROFS, ENOENT under
 * /proc...), instead of an internal error from deep inside the lock. Returns the directories it
 * made (removeMadeDirectories takes them away again when the command records nothing).
 * `makeNothing` (STATUS): the same checks, with a missing directory judged by the one it would be
 * made in (a directory this user may write); nothing is made.
 */
export function prepareStateDirectory(stateDirectory: string, options: { makeNothing?: boolean } = {}): string[] {
  const locks = join(stateDirectory, LOCK_DIRECTORY_NAME);
  let made: string[] = [];
  let reason: string | undefined;
  let hint = CNI_STATE_DIR_HINT;
  try {
    // Before anything is made in it: a directory another user can write in is refused (trust.ts).
    refuseUntrustedDirectory(stateDirectory, { follow: true, unusableHint: CNI_STATE_DIR_HINT });
    refuseUntrustedDirectory(locks, { follow: false, unusableHint: CNI_STATE_DIR_HINT });
    let writable = [stateDirectory, locks];
    if (options.makeNothing) {
      // What makeDirectory would refuse, found without making anything; the missing ones are not checked.
      const missing = checkDirectoryCanBeMade(locks);
      writable = writable.filter((directory) => !missing.includes(resolve(directory)));
    } else {
      made = makeDirectory(locks, 0o700);
    }
    for (const directory of writable) {
      try {
        accessSync(directory, constants.W_OK);
      } catch (error) {
        reason = `${directory} is not writable (${errnoOf(error) ?? (error as Error).message})`;
        break;
      }
    }
  } catch (error) {
    if (error instanceof StateDirectoryError) {
      reason = error.reason;
      hint = error.hint ?? hint;
    } else if (error instanceof DirectoryNotMadeError) reason = error.reason;
    else throw error;
  }
  if (reason !== undefined) {
    removeMadeDirectories(made);
    throw new CniConfigError('stateDir', stateDirectory, `cannot be used as a state directory: ${reason}`, hint);
  }
  return made;
}

export class AttachmentStore {
  private readonly container: SandboxStore;
  private readonly attachment: SandboxStore;
  private readonly interfacesDirectory: string;

  constructor(
    readonly stateDirectory: string,
    readonly containerId: string,
    readonly interfaceName: string,
  ) {
    this.container = new SandboxStore(containerId, stateDirectory, {
      lockTimeoutHint: CNI_LOCK_TIMEOUT_HINT,
      unusableHint: CNI_STATE_DIR_HINT,
      stateDirectorySetting: CNI_STATE_DIR_SETTING,
      removeAgain: CNI_REMOVE_AGAIN,
    });
    this.interfacesDirectory = join(this.container.directory, 'interfaces');
    this.attachment = this.recordStore(interfaceName);
  }

  /** The record of one interface: its envelope carries the container id, its content the interface name. */
  private recordStore(interfaceName: string): SandboxStore {
    return new SandboxStore(interfaceName, this.interfacesDirectory, {
      validateId: (name) => {
        const problem = interfaceNameProblem(name);
        if (problem !== undefined) throw new CniEnvironmentError('CNI_IFNAME', name, INTERFACE_NAME_ACCEPTED, problem);
      },
      content: cniContentSchema.refine((record) => record.interfaceName === interfaceName, {
        error: `${JSON.stringify(interfaceName)} (the interface directory it is in)`,
        path: ['interfaceName'],
      }),
      expectedId: this.containerId,
      register: false,
      unusableHint: CNI_STATE_DIR_HINT,
      stateDirectorySetting: CNI_STATE_DIR_SETTING,
      removeAgain: CNI_REMOVE_AGAIN,
    });
  }

  get statePath(): string {
    return this.attachment.statePath;
  }

  /** Whether a record file is there (readable or not), looked up without making anything. */
  hasRecord(): boolean {
    return existsSync(this.statePath);
  }

  /** Whether the container's directory is there (a record, or what a killed ADD or DEL left of one). */
  hasContainerDirectory(): boolean {
    return existsSync(this.container.directory);
  }

  /** Whether the container's lock file is there: another command on the container holds it, or held it. */
  hasLockFile(): boolean {
    return existsSync(this.container.lockPath);
  }

  read(): CniAttachmentState | undefined {
    return this.attachment.read<CniAttachmentState>();
  }

  /**
   * The record's text whatever it holds (bytes that are not UTF-8 read as U+FFFD), or undefined when it
   * cannot be read at all.
   */
  readTextIfAny(): string | undefined {
    try {
      return this.attachment.readText();
    } catch (error) {
      return damagedRecordText(error);
    }
  }

  /**
   * Renames the record beside itself (`state.json.unreadable-<time>`), so that nothing is destroyed
   * and an operator can look at it; returns the new path.
   */
  setAside(now = new Date()): string {
    const aside = `${this.statePath}.unreadable-${now.toISOString().replace(/[:.]/g, '-')}`;
    renameSync(this.statePath, aside);
    return aside;
  }

  write(state: CniAttachmentState): void {
    this.attachment.write(state);
  }

  /**
   * The record files of every interface of the container (this one's included), readable or not: what
   * this container's chains made in the pod namespace is no other owner's (refuseHeldNamespace).
   */
  containerRecordFiles(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.interfacesDirectory);
    } catch {
      return [this.statePath];
    }
    return [...new Set([this.statePath, ...names.map((name) => join(this.interfacesDirectory, name, 'state.json'))])];
  }

  /** The records of the container's other interfaces (other chains on the same pod). */
  siblings(): CniAttachmentState[] {
    let names: string[];
    try {
      names = readdirSync(this.interfacesDirectory);
    } catch {
      return [];
    }
    return names
      .filter((name) => name !== this.interfaceName)
      .flatMap((name) => {
        try {
          const state = this.recordStore(name).read<CniAttachmentState>();
          return state ? [state] : [];
        } catch {
          return [];
        }
      });
  }

  /** Removes this interface's record, and the container's directories once nothing else is in them. */
  remove(): void {
    this.attachment.remove();
    try {
      rmdirSync(this.interfacesDirectory);
    } catch {
      // another interface of the container is still recorded
    }
  }

  /**
   * With no record: removes what a command killed half-way left of this interface (its emptied
   * directory, a write's temporary file), so the container's directory and lock file can go too.
   * A record set aside stays, and its directory with it. Call holding the lock.
   */
  removeLeftovers(): void {
    this.attachment.removeStaleTemporaries();
    for (const directory of [this.attachment.directory, this.interfacesDirectory]) {
      try {
        rmdirSync(directory);
      } catch (error) {
        // Already gone (a DEL killed after removing the interface's directory): the next one may not be.
        if (errnoOf(error) === 'ENOENT') continue;
        return; // not empty (a record set aside, another interface)
      }
    }
  }

  /**
   * Unlinks the container's lock file, as a holder may (lock.ts: a waiter then takes the path's new
   * file). Call holding the lock; for a command that made the file for an entry it leaves as it was.
   */
  removeLockFile(): void {
    rmSync(this.container.lockPath, { force: true });
  }

  /** Makes and registers the state directory for gc; call under the lock, before the first record is written. */
  async prepareToRecord(): Promise<void> {
    await this.container.prepareToRecord();
  }

  /** Runs `work` holding the container's lock (SandboxLockedError after `timeoutMs`); an emptied container directory goes after it. */
  async withLock<T>(work: () => Promise<T>, timeoutMs: number): Promise<T> {
    return this.container.withLock(work, timeoutMs);
  }
}
