/**
 * What vcnet-cni records between ADD and DEL/CHECK, one record per container and interface so that
 * several chains on one pod (eth0, net1...) never share one:
 *
 *   <stateDir>/<container id>/lock                          held while any command changes the container
 *   <stateDir>/<container id>/interfaces/<ifname>/state.json
 *
 * One lock per container (not per interface) because the chains of one pod pick tap names in the
 * same namespace: two ADDs at once must not both pick tap0_kata.
 */
import { readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { NetworkState } from '../network/network.js';
import { CNI_RECORD, CNI_STATE_VERSION } from '../network/state/records.js';
import { SandboxStore } from '../network/state/store.js';

export { CNI_STATE_VERSION };

export interface AttachedDevice {
  /** The tap (tcfilter, none) or macvtap the VM uses. */
  name: string;
  mac: string;
  kind: 'tap' | 'macvtap';
}

export interface CniAttachmentState {
  version: typeof CNI_STATE_VERSION;
  containerId: string;
  interfaceName: string;
  networkName: string;
  namespacePath: string;
  /** dev:inode of the namespace at ADD: DEL and CHECK never touch another namespace that reuses the path. */
  namespaceIdentity: string;
  createdAt: string;
  /** Missing while ADD is under way. */
  device?: AttachedDevice;
  network: NetworkState;
}

/** The identity of a namespace file (nsfs inode), or undefined when the path is gone. */
export function namespaceIdentity(path: string): string | undefined {
  try {
    const stat = statSync(path);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
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
    this.container = new SandboxStore(containerId, stateDirectory);
    this.interfacesDirectory = join(this.container.directory, 'interfaces');
    this.attachment = new SandboxStore(interfaceName, this.interfacesDirectory);
  }

  get statePath(): string {
    return this.attachment.statePath;
  }

  read(): CniAttachmentState | undefined {
    return this.attachment.read<CniAttachmentState>(CNI_RECORD);
  }

  write(state: CniAttachmentState): void {
    this.attachment.write(state);
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
          const state = new SandboxStore(name, this.interfacesDirectory).read<CniAttachmentState>(CNI_RECORD);
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
   * Runs `work` holding the container's lock (SandboxLockedError after `timeoutMs`). The container
   * directory is removed after the last DEL, so a lock taken at that moment can find it gone: retried.
   */
  async withLock<T>(work: () => Promise<T>, timeoutMs: number): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let started = false;
      try {
        return await this.container.withLock(() => {
          started = true;
          return work();
        }, timeoutMs);
      } catch (error) {
        if (started || attempt >= 3 || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      } finally {
        if (started) this.removeContainerDirectoryIfEmpty();
      }
    }
  }

  private removeContainerDirectoryIfEmpty(): void {
    try {
      rmdirSync(this.container.directory);
    } catch {
      // not empty (recorded interfaces, or another command's lock): kept
    }
  }
}
