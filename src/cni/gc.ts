/**
 * GC (CNI 1.1.0): the runtime names the attachments of a network that are still valid; vcnet-cni
 * undoes every other attachment it recorded for that network, as DEL would. Records of other
 * networks sharing the state directory are not touched, nor are attachments another vcnet-cni is
 * changing right now (their container is locked).
 */
import { join } from 'node:path';
import * as z from 'zod';
import { safeReaddir } from '../directory-entries.js';
import { VcnetError } from '../errors.js';
import { PARSE_OPTIONS } from '../parse-options.js';
import type { CniConfig } from './config.js';
import { del } from './del.js';
import { CniConfigError } from './errors.js';
import { commandSubject, noticesAbout, type Warn, warningLine, warnOnStandardError } from './notices.js';
import { AttachmentStore } from './state.js';

const VALID_ATTACHMENTS_KEY = 'cni.dev/valid-attachments';
/**
 * The key as the CNI 1.1.0 SPEC first named it (containernetworking/cni#1101); libcni sends both
 * since #1103, and a runtime written from the first text sends only this one.
 */
const ATTACHMENTS_ALIAS_KEY = 'cni.dev/attachments';

export interface ValidAttachment {
  containerID: string;
  ifname: string;
}

const validAttachmentsSchema = z.array(z.looseObject({ containerID: z.string(), ifname: z.string() }));

function attachmentsUnder(raw: Record<string, unknown>, key: string): ValidAttachment[] | undefined {
  const value = raw[key];
  if (value === undefined) return undefined;
  const parsed = validAttachmentsSchema.safeParse(value, PARSE_OPTIONS);
  if (!parsed.success) {
    throw new CniConfigError(key, value, 'expected a list of {"containerID": string, "ifname": string}');
  }
  return parsed.data.map(({ containerID, ifname }) => ({ containerID, ifname }));
}

/**
 * The runtime's list of attachments still in use, under either key (both given: every attachment
 * either lists is kept). Neither key is a config error, never "nothing is valid": GC would undo
 * every live attachment of the network.
 */
export function parseValidAttachments(raw: Record<string, unknown>): ValidAttachment[] {
  const listed = attachmentsUnder(raw, VALID_ATTACHMENTS_KEY);
  const alias = attachmentsUnder(raw, ATTACHMENTS_ALIAS_KEY);
  if (listed === undefined && alias === undefined) {
    throw new CniConfigError(
      VALID_ATTACHMENTS_KEY,
      undefined,
      `missing: GC needs the list of attachments still in use (or "${ATTACHMENTS_ALIAS_KEY}", its first name); nothing was removed`,
      `the runtime adds "${VALID_ATTACHMENTS_KEY}" to the config of GC (libcni does); [] when no attachment is valid`,
    );
  }
  return [...(listed ?? []), ...(alias ?? [])];
}

/**
 * What DEL does for an interface without a record: removes what a killed ADD or DEL left (an empty
 * directory, a temporary file); left for the next GC when locked. A lock file this GC made for an
 * entry it cannot tidy (not vcnet's, a record set aside) goes with the lock, not one more per run.
 */
async function tidy(stateDirectory: string, containerId: string, interfaceName: string): Promise<void> {
  const store = new AttachmentStore(stateDirectory, containerId, interfaceName);
  const lockFileMade = !store.hasLockFile();
  try {
    await store.withLock(async () => {
      // Recorded meanwhile (an ADD): not leftovers, and the lock file is the record's.
      if (store.hasRecord()) return;
      store.removeLeftovers();
      // An emptied container directory takes its lock file with it (SandboxStore.withLock).
      if (lockFileMade && store.hasContainerDirectory()) store.removeLockFile();
    }, 0);
  } catch (error) {
    if (!(error instanceof VcnetError && error.code === 'VCNET_SANDBOX_LOCKED')) throw error;
  }
}

export interface GarbageCollection {
  removed: ValidAttachment[];
  /** Locked by a command under way: left for the next GC. */
  busy: ValidAttachment[];
}

/** Removes the network's recorded attachments not in `valid`; throws after trying all when some failed. */
export async function garbageCollect(
  config: CniConfig,
  valid: ValidAttachment[],
  warn: Warn = warnOnStandardError,
): Promise<GarbageCollection> {
  const subject = commandSubject('GC', `network ${config.name}`);
  const keep = new Set(valid.map((attachment) => `${attachment.containerID}/${attachment.ifname}`));
  const outcome: GarbageCollection = { removed: [], busy: [] };
  const failures: string[] = [];
  for (const containerId of safeReaddir(config.stateDirectory)) {
    for (const interfaceName of safeReaddir(join(config.stateDirectory, containerId, 'interfaces'))) {
      if (keep.has(`${containerId}/${interfaceName}`)) continue;
      let recordedNetwork: string | undefined;
      try {
        const store = new AttachmentStore(config.stateDirectory, containerId, interfaceName);
        if (!store.hasRecord()) {
          // What a killed DEL left (an empty directory, the lock file): any network's GC tidies it.
          await tidy(config.stateDirectory, containerId, interfaceName);
          continue;
        }
        recordedNetwork = store.read()?.networkName;
      } catch (error) {
        // Whose network it was cannot be read either: not this GC's to remove, nor a reason to fail
        // it (the runtime would retry forever). DEL of that container sets the record aside.
        warn(warningLine(subject, `skipped ${containerId}/${interfaceName}: ${(error as Error).message}`));
        continue;
      }
      if (recordedNetwork !== config.name) continue;
      const attachment = { containerID: containerId, ifname: interfaceName };
      try {
        // The notices of this DEL (what its detach could not put back) name the container it undid.
        await noticesAbout(`${subject}, DEL of ${containerId}/${interfaceName}`, interfaceName, () =>
          del(
            {
              environment: { command: 'DEL', containerId, interfaceName, pluginPath: [] },
              config: { stateDirectory: config.stateDirectory, lockTimeoutMs: 0 },
            },
            warn,
          ),
        );
        outcome.removed.push(attachment);
      } catch (error) {
        if (error instanceof VcnetError && error.code === 'VCNET_SANDBOX_LOCKED') outcome.busy.push(attachment);
        else failures.push(`${containerId}/${interfaceName}: ${(error as Error).message}`);
      }
    }
  }
  if (failures.length > 0) {
    throw new VcnetError(
      'VCNET_DETACH_INCOMPLETE',
      `GC of network ${config.name} left stale attachments: ${failures.join('; ')}`,
      {
        value: failures.length,
        hint: 'GC removes the rest; run it again, or DEL those containers',
      },
    );
  }
  return outcome;
}
