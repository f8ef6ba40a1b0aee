/**
 * The default state directories, and the `--state-dir` a printed command needs for another one: here
 * (not in store.ts or registry.ts) so the record envelope can name them in its hints without a cycle.
 */
import { basename, dirname, resolve } from 'node:path';
import { shellWord } from '../../shell-word.js';

/** `vcnet attach`'s default state directory. */
export const DEFAULT_STATE_DIRECTORY = '/run/vcnet/sandboxes';

/** vcnet-cni's default state directory (its netconf `stateDir`); here so gc knows it without importing the plugin. */
export const DEFAULT_CNI_STATE_DIRECTORY = '/run/vcnet/cni';

/**
 * What a printed `vcnet` command needs to reach sandboxes in `root`: nothing for the default state
 * directory, else ` --state-dir <root>` (without it the command looks in the default one).
 */
export function stateDirectoryFlag(root: string): string {
  if (resolve(root) === DEFAULT_STATE_DIRECTORY) return '';
  return ` --state-dir ${shellWord(root)}`;
}

/**
 * The state directory a record file is in: `<dir>/<id>/state.json` (a sandbox) or
 * `<dir>/<container>/interfaces/<name>/state.json` (a vcnet-cni interface); undefined for another path.
 */
function stateDirectoryOfRecord(file: string): string | undefined {
  if (basename(file) !== 'state.json') return undefined;
  const above = dirname(dirname(file));
  if (basename(above) === 'interfaces') return dirname(dirname(above));
  return above;
}

/**
 * ` --state-dir <dir>` for a `vcnet gc` that must read the state directory a record file is in:
 * nothing when gc reads it anyway (either default directory) or the file is not a record's.
 */
export function gcStateDirectoryFlag(file: string): string {
  const root = stateDirectoryOfRecord(file);
  if (root === undefined || [DEFAULT_STATE_DIRECTORY, DEFAULT_CNI_STATE_DIRECTORY].includes(resolve(root))) return '';
  return ` --state-dir ${shellWord(root)}`;
}
