/**
 * `vcnet install-cni`: puts the vcnet-cni plugin and a conflist where a container runtime looks for
 * them (/opt/cni/bin, /etc/cni/net.d), as Calico's and Cilium's install-cni steps do. Idempotent:
 * files already as wanted are left alone; the others are replaced atomically (temp file + rename), so a
 * runtime executing the plugin at that moment runs either the old or the new file, never half of one.
 *
 * The plugin is a launcher script holding the absolute paths of this node binary and this vcnet's
 * dist/cni/main.js, so it runs with any PATH (runtimes often exec plugins with a minimal one). Chosen
 * over a Node single executable application: vcnet loads a native addon (build/Release), which a
 * SEA blob cannot load from inside itself, and every install would copy the ~100 MB node binary and
 * need postject, a dependency made for nothing else.
 */
import { chmodSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError, VcnetError } from '../errors.js';
import { bytesToIp, ipToBytes, networkOf, parseCidr } from '../netlink/codec/address-format.js';
import { AddressFamily } from '../netlink/codec/constants.js';
import { INTERWORKING_MODELS, type InterworkingModel } from '../network/interworking-model.js';
import { DEFAULT_CNI_STATE_DIRECTORY } from '../network/state/default-directories.js';
import { makeDirectory } from '../network/state/directory.js';
import { shellWord } from '../shell-word.js';
import { bridgeNetwork } from './bridge-network.js';
import { MINIMUM_OPEN_FILES, openFileLimitHint } from './file-limit.js';
import {
  atLeast,
  isSupportedCniVersion,
  PREFERRED_CNI_VERSION,
  SUPPORTED_CNI_VERSIONS,
  type SupportedCniVersion,
} from './version.js';

export const DEFAULT_CNI_BIN_DIRECTORY = '/opt/cni/bin';
export const DEFAULT_CNI_CONF_DIRECTORY = '/etc/cni/net.d';
const PLUGIN_NAME = 'vcnet-cni';

/**
 * dist/cni/main.js of this vcnet. This module is dist/cni/install.js once built, and is also bundled
 * into dist/cli/main.js (scripts/bundle-entry-points.ts): the path is the same from both.
 */
function builtPluginEntry(): string {
  return fileURLToPath(new URL('../cni/main.js', import.meta.url));
}

/**
 * How the launcher and the development wrapper (src/cni/vcnet-cni, which holds these lines too)
 * answer when they cannot run the plugin, with shell builtins only (a runtime may give no PATH):
 * STATUS gets the spec's code 50 (plugin not available), other commands $code (5, I/O failure, or
 * vcnet's own 100), in the cniVersion of the config when it names one vcnet-cni speaks. DEL
 * succeeds, since a failing DEL stops the chain before IPAM frees the pod's address, unless
 * $del_fails is set: when the runtime's retry of DEL can succeed once the node is fixed (the
 * open-file limit raised), a DEL that succeeded doing nothing would leave the plumbing and its
 * record behind. Expects $summary (the reply's msg), $problem (its details; neither with '"' or
 * '\\'), $code and $del_fails (empty or not).
 */
export const CANNOT_RUN_ANSWER = [
  'if [ "$CNI_COMMAND" = DEL ] && [ -z "$del_fails" ]; then',
  '  echo "vcnet-cni: $problem" >&2',
  '  exit 0',
  'fi',
  'input=',
  // Not from a terminal: a person trying the plugin by hand gets the answer instead of a wait.
  'if [ ! -t 0 ]; then',
  '  while IFS= read -r line || [ -n "$line" ]; do input="$input$line"; done',
  'fi',
  'version=',
  `q='"'`,
  `rest=\${input#*\${q}cniVersion\${q}}`,
  'if [ "$rest" != "$input" ]; then',
  `  rest=\${rest#*\${q}}`,
  `  version=\${rest%%\${q}*}`,
  'fi',
  'case $version in',
  `  ${SUPPORTED_CNI_VERSIONS.join(' | ')}) ;;`,
  `  *) version=${PREFERRED_CNI_VERSION} ;;`,
  'esac',
  'if [ "$CNI_COMMAND" = STATUS ]; then',
  '  code=50',
  'fi',
  `printf '{"cniVersion":"%s","code":%s,"msg":"%s","details":"%s"}\\n' "$version" "$code" "$summary" "$problem"`,
  // After the reply: at 12 open files, dash cannot save stdout to redirect echo's, and stdout is lost.
  'echo "vcnet-cni: $problem" >&2',
  'exit 1',
  '',
].join('\n');

/** The words openFileLimitHint puts after the limit, for the shell to put after its own. */
const OPEN_FILE_ADVICE = openFileLimitHint({ soft: 0, hard: 0 }).replace(/^[^;]*; /, '');

/**
 * What the launcher and the development wrapper check before they start node, with shell builtins
 * only (and `$(...)`, one fork): vcnet-cni needs MINIMUM_OPEN_FILES open files, and under about 20
 * node dies with no answer at all (an abort as it starts its threads, or a SIGSEGV). Node raises its
 * soft limit to the hard limit as it starts (node.cc), so only the hard limit counts. When it is
 * below the minimum, `files_problem` is the details of the answer and node is not started: the
 * answer is vcnet-cni's own for a load that ran out of files (VCNET_SYSCALL, errno EMFILE, and
 * openFileLimitHint's words). Where `$(...)` cannot make its pipe (5 files or fewer), the limit
 * reads as unknown.
 */
export const FILE_LIMIT_CHECK = [
  `# vcnet-cni needs ${MINIMUM_OPEN_FILES} open files (docs/cni.md). node raises the soft limit to the hard one as it`,
  '# starts; a hard limit below that is answered here, as node dies without an answer under about 20.',
  `minimum_files=${MINIMUM_OPEN_FILES}`,
  // No redirection of a builtin's output before the answer: dash saves the descriptor at 10 or
  // above, and at 12 files the script then goes on without its stdout.
  'files=$(ulimit -H -n 2>/dev/null)',
  'case $files in',
  '  unlimited) files_problem= ;;',
  `  '' | *[!0-9]*) files_problem=${shellWord(openFileLimitHint(undefined).replace(/;.*$/, ''))} ;;`,
  '  *)',
  '    files_problem=',
  '    if ! [ "$files" -ge "$minimum_files" ]; then',
  '      files_problem="the open-file limit of vcnet-cni is $files (hard limit $files)"',
  '    fi',
  '    ;;',
  'esac',
  'if [ -n "$files_problem" ]; then',
  `  files_problem="VCNET_SYSCALL (errno EMFILE): $files_problem; "${shellWord(OPEN_FILE_ADVICE)}`,
  'fi',
  '',
].join('\n');

/** After FILE_LIMIT_CHECK found too few files: the answer's words, for CANNOT_RUN_ANSWER. */
export const FILE_LIMIT_ANSWER = [
  `summary="vcnet-cni cannot start: its hard open-file limit is \${files:-unknown}, below the $minimum_files files it needs"`,
  'problem=$files_problem',
  'code=100',
  'del_fails=1',
  '',
].join('\n');

/** `lines` (ending in a newline) indented by two spaces, for a branch of an `if`. */
function indent(lines: string): string {
  return lines.replace(/^(?=.)/gm, '  ');
}

/** The launcher: execs node on the plugin, or answers as CANNOT_RUN_ANSWER says when vcnet was moved or removed. */
export function launcherScript(nodePath: string, entryPath: string): string {
  const node = shellWord(nodePath);
  const entry = shellWord(entryPath);
  return `#!/bin/sh
# vcnet-cni, written by \`vcnet install-cni\`: runs vcnet's CNI plugin with the node binary recorded at
# install, whatever PATH the container runtime gives. Run \`vcnet install-cni\` again after moving vcnet.
node=${node}
entry=${entry}
${FILE_LIMIT_CHECK}if [ -x "$node" ] && [ -f "$entry" ]; then
  if [ -z "$files_problem" ]; then
    exec "$node" "$entry" "$@"
  fi
${indent(FILE_LIMIT_ANSWER)}else
  summary='vcnet-cni is not installed completely'
  problem="$node or $entry is missing; run vcnet install-cni"
  code=5
  del_fails=
fi
${CANNOT_RUN_ANSWER}`;
}

export interface ConflistOptions {
  networkName: string;
  bridge: string;
  subnet: string;
  model: InterworkingModel;
  stateDirectory: string;
  cniVersion: SupportedCniVersion;
}

export const DEFAULT_CONFLIST_OPTIONS: ConflistOptions = {
  networkName: 'vcnet',
  bridge: 'vcnet0',
  subnet: '10.89.0.0/16',
  model: 'tcfilter',
  stateDirectory: DEFAULT_CNI_STATE_DIRECTORY,
  cniVersion: PREFERRED_CNI_VERSION,
};

/**
 * Whether the conflist says `"disableCheck": true`: with the macvtap model the chain's CHECK always
 * fails (the interface plugin before vcnet-cni looks on the pod interface for the addresses macvtap
 * moved into the guest). The key came with CHECK, in spec 0.4.0; a 0.3.x list has neither.
 */
function conflistDisablesCheck(options: Pick<ConflistOptions, 'model' | 'cniVersion'>): boolean {
  return options.model === 'macvtap' && atLeast(options.cniVersion, '0.4.0');
}

/** What install-cni says on stderr about the conflist it wrote, beside the file list. */
export function conflistNotes(options: Pick<ConflistOptions, 'model' | 'cniVersion'>): string[] {
  if (options.model !== 'macvtap') return [];
  if (conflistDisablesCheck(options))
    return [
      'the conflist has "disableCheck": true: with model macvtap the CHECK of the chain always fails (the bridge plugin looks on the pod interface for the addresses macvtap moved into the guest), so the runtime must not run it',
    ];
  return [
    `cniVersion ${options.cniVersion} has no CHECK (nor disableCheck); with model macvtap the CHECK of the chain always fails, so a conflist moved to 0.4.0 or later needs "disableCheck": true`,
  ];
}

/** bridge + host-local, then vcnet-cni: the network of a VM runtime class (see docs/cni.md). */
export function vcnetConflist(options: ConflistOptions): Record<string, unknown> {
  const {
    cniVersion: _version,
    name: _name,
    ...bridge
  } = bridgeNetwork({
    name: options.networkName,
    bridge: options.bridge,
    subnet: options.subnet,
    dataDir: '/var/lib/cni/networks',
    defaultRoute: true,
  });
  // host-local's own default data directory; the demo's helper names one explicitly.
  const ipam = { ...(bridge.ipam as Record<string, unknown>) };
  delete ipam.dataDir;
  return {
    cniVersion: options.cniVersion,
    name: options.networkName,
    ...(conflistDisablesCheck(options) ? { disableCheck: true } : {}),
    plugins: [
      { ...bridge, ipam },
      { type: PLUGIN_NAME, model: options.model, stateDir: options.stateDirectory },
    ],
  };
}

export interface InstallOptions {
  binDirectory: string;
  confDirectory: string;
  /** Defaults to the node running this code. */
  nodePath?: string;
  /** Defaults to dist/cni/main.js beside this module. */
  entryPath?: string;
  /** The conflist's file name in confDirectory; undefined: no conflist is written. */
  conflistFile?: string;
  conflist?: Partial<ConflistOptions>;
}

export interface InstalledFile {
  path: string;
  /** False when the file already had this content (and mode). */
  changed: boolean;
}

/** ADDRESS/PREFIX with the prefix length in range for the address's family. */
function isCidr(text: string): boolean {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!match) return false;
  const family = isIP(match[1]!);
  const length = Number(match[2]);
  return family !== 0 && length <= (family === 4 ? 32 : 128);
}

/**
 * --subnet as host-local takes a range (plugins' allocator/range.go Canonicalize): a written
 * conflist it refuses fails every pod's ADD ("Network has host bits set"), long after install-cni
 * said "installed". So a subnet with host bits set is refused naming the network meant, and one
 * with no room for the bridge's gateway and a pod (host-local wants at least 2 host bits).
 */
function checkSubnet(subnet: string): void {
  if (!isCidr(subnet)) {
    throw new InvalidInputError(
      '--subnet',
      subnet,
      'an IPv4 CIDR (prefix length 0 to 32) such as 10.89.0.0/16, or an IPv6 CIDR (prefix length 0 to 128)',
    );
  }
  const { address, prefixLength, family } = parseCidr(subnet);
  const bits = family === AddressFamily.INET ? 32 : 128;
  const network = networkOf(address, prefixLength);
  // host-local reads an IPv4-mapped IPv6 range (::ffff:10.0.0.0/104) as a 4-byte address under a
  // 16-byte mask and refuses it ("IPNet IP and Mask version mismatch"), host bits or not. Only a
  // prefix of 96 or more keeps a network there (a shorter one masks part of the ffff).
  const bytes = ipToBytes(network);
  if (
    family === AddressFamily.INET6 &&
    bytes.subarray(0, 10).every((byte) => byte === 0) &&
    bytes.readUInt16BE(10) === 0xffff
  ) {
    const ipv4 = bytesToIp(bytes.subarray(12));
    const mappedLength = prefixLength - 96;
    // The IPv4 range it maps, or a /24 around it where that is too small for host-local (the hint
    // says so: it is not the range the user wrote).
    const remedy =
      mappedLength > 30
        ? `set --subnet to an IPv4 range with room for the bridge's gateway and pods, such as ${networkOf(ipv4, 24)}/24: ${subnet} maps ${ipv4}/${mappedLength}, too small for host-local`
        : `set --subnet to ${networkOf(ipv4, mappedLength)}/${mappedLength}, the IPv4 range of ${subnet}`;
    throw new InvalidInputError(
      '--subnet',
      subnet,
      "an IPv4 range written as IPv4, or an IPv6 range outside ::ffff:0:0/96 (host-local refuses an IPv4-mapped IPv6 range, and every pod's ADD would fail)",
      remedy,
    );
  }
  if (network !== networkOf(address, bits)) {
    throw new InvalidInputError(
      '--subnet',
      subnet,
      `a network address with no host bits set, such as ${network}/${prefixLength} (host-local refuses a range with host bits set, and every pod's ADD would fail)`,
      `set --subnet to ${network}/${prefixLength}, the network ${subnet} is in`,
    );
  }
  if (prefixLength > bits - 2) {
    throw new InvalidInputError(
      '--subnet',
      subnet,
      `a range with room for the bridge's gateway and the pods: a prefix length of at most ${bits - 2} (host-local allocates from no smaller network)`,
      `give a larger range, such as ${networkOf(address, bits - 8)}/${bits - 8}`,
    );
  }
}

/**
 * The conflist's file name: a name in --conf-dir (no directory part, which could write outside it),
 * ending in .conflist: libcni loads only .conf, .conflist and .json files, and reads a list only from
 * a .conflist.
 */
function validateConflistFile(name: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\.conflist$/.test(name)) {
    throw new InvalidInputError(
      '--conf-file',
      name,
      'a file name ending in .conflist, without a directory (letters, digits, "_", "." and "-"), such as 99-vcnet.conflist',
    );
  }
}

/** Each refusal names the `vcnet install-cni` flag that sets the field (the CLI is its only caller). */
function validatedConflistOptions(options: Partial<ConflistOptions>): ConflistOptions {
  const merged = { ...DEFAULT_CONFLIST_OPTIONS, ...options };
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(merged.networkName)) {
    throw new InvalidInputError('--network-name', merged.networkName, 'letters, digits, "_", "." and "-"');
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(merged.bridge)) {
    throw new InvalidInputError('--bridge', merged.bridge, 'an interface name of at most 15 characters');
  }
  checkSubnet(merged.subnet);
  if (!(INTERWORKING_MODELS as readonly string[]).includes(merged.model)) {
    throw new InvalidInputError('--model', merged.model, INTERWORKING_MODELS.join(', '));
  }
  if (!isAbsolute(merged.stateDirectory)) {
    throw new InvalidInputError('--state-dir', merged.stateDirectory, 'an absolute directory path');
  }
  if (!isSupportedCniVersion(merged.cniVersion)) {
    throw new InvalidInputError('--cni-version', merged.cniVersion, SUPPORTED_CNI_VERSIONS.join(', '));
  }
  return merged;
}

/** Writes `content` at `path` unless it is already there, through a temp file renamed over it. */
function placeFile(path: string, content: string, mode: number): InstalledFile {
  let current: string | undefined;
  try {
    current = readFileSync(path, 'utf8');
  } catch {
    current = undefined;
  }
  if (current === content) {
    chmodSync(path, mode);
    return { path, changed: false };
  }
  makeDirectory(dirname(path), 0o755);
  const temporary = join(dirname(path), `.${PLUGIN_NAME}-install-${process.pid}`);
  try {
    writeFileSync(temporary, content, { mode });
    chmodSync(temporary, mode);
    renameSync(temporary, path);
  } finally {
    rmSync(temporary, { force: true });
  }
  return { path, changed: true };
}

export function installCni(options: InstallOptions): InstalledFile[] {
  for (const [field, directory] of [
    ['--bin-dir', options.binDirectory],
    ['--conf-dir', options.confDirectory],
  ] as const) {
    if (!isAbsolute(directory)) throw new InvalidInputError(field, directory, 'an absolute directory path');
  }
  const nodePath = options.nodePath ?? process.execPath;
  const entryPath = options.entryPath ?? builtPluginEntry();
  if (!existsSync(entryPath) || !entryPath.endsWith('.js')) {
    throw new VcnetError('VCNET_CNI_NOT_BUILT', `the built plugin ${entryPath} is missing`, {
      value: entryPath,
      hint: 'run `npm run build` in the vcnet checkout, then install-cni from dist (node dist/cli/main.js)',
    });
  }
  if (options.conflistFile !== undefined) validateConflistFile(options.conflistFile);
  const conflist = options.conflistFile ? vcnetConflist(validatedConflistOptions(options.conflist ?? {})) : undefined;
  const installed = [placeFile(join(options.binDirectory, PLUGIN_NAME), launcherScript(nodePath, entryPath), 0o755)];
  if (conflist && options.conflistFile) {
    installed.push(
      placeFile(join(options.confDirectory, options.conflistFile), `${JSON.stringify(conflist, null, 2)}\n`, 0o644),
    );
  }
  return installed;
}
