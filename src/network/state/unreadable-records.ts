/**
 * What a person can do about a record vcnet cannot read, said the same by `vcnet gc` and `vcnet list`.
 * gc drops such a record by itself only when it still tells its namespace's device, inode and path
 * and that namespace is gone (gone-records.ts). Otherwise only the person knows whether its sandbox
 * still runs: gc never guesses, so the text says what to look at and which commands settle it.
 */
import { shellWord } from '../../shell-word.js';
import { gcStateDirectoryFlag } from './default-directories.js';

/** Whose record it is: the sandbox id (its directory's name), or a vcnet-cni container and interface. */
export interface UnreadableRecordOwner {
  file: string;
  /** The sandbox id, or the vcnet-cni container id. */
  id: string;
  interfaceName?: string;
}

/**
 * The command that sets a record aside beside itself, as vcnet-cni's DEL does with one it cannot
 * read: gc and list read only `state.json`, so nothing is destroyed and nothing reads it any more.
 */
export function setAsideCommand(file: string): string {
  return `mv ${shellWord(file)} ${shellWord(`${file}.unreadable`)}`;
}

/**
 * How a person settles a record gc will keep (a clause, no leading separator): restore it while its
 * sandbox runs; once it is gone, set it aside and let gc collect what it left in `namespacePath`
 * (when known: else gc lists vcnet's links in a namespace no record names as unclaimed).
 */
export function settleByHand(owner: UnreadableRecordOwner, namespacePath: string | undefined): string {
  const { file, id, interfaceName } = owner;
  const stateDirectory = gcStateDirectoryFlag(file);
  const collect =
    namespacePath === undefined
      ? `\`vcnet gc --dry-run${stateDirectory}\` then lists the vcnet links it left where no record names their namespace as unclaimed, and \`vcnet gc --netns <that namespace>${stateDirectory}\` removes them`
      : `\`vcnet gc --netns ${shellWord(namespacePath)}${stateDirectory}\` removes what it left there`;
  const setAside = `set the record aside (\`${setAsideCommand(file)}\`) and ${collect}`;
  if (interfaceName !== undefined)
    return `the runtime's CNI DEL of container ${id} (interface ${interfaceName}) sets the record aside and removes what it made; if the container is gone and no DEL will come, ${setAside}`;
  return `restore the file if sandbox ${id} still runs; once it is gone (its VM stopped), ${setAside}`;
}
