/**
 * One invocation of vcnet-cni as a runtime makes it: CNI_* variables and stdin in, what to print on
 * stdout and the exit status out. Kept apart from main.ts so tests call it without a process.
 */

import { VCNET_VERSION } from '../version.js';
import { add } from './add.js';
import { check } from './check.js';
import {
  decodeConfig,
  misspeltConfigKeys,
  parseCniConfig,
  parseDeleteTarget,
  parseEnvironment,
  requireCommandInVersion,
} from './config.js';
import { del } from './del.js';
import { cniErrorReply } from './errors.js';
import type { OpenFileLimit } from './file-limit.js';
import { garbageCollect, parseValidAttachments } from './gc.js';
import { commandSubject, type Warn, warningLine, warnOnStandardError, writingNotices } from './notices.js';
import { status } from './status.js';
import {
  isSupportedCniVersion,
  PREFERRED_CNI_VERSION,
  resultInVersion,
  SUPPORTED_CNI_VERSIONS,
  versionReply,
} from './version.js';

export interface PluginOutcome {
  /** JSON for stdout, or '' (DEL, CHECK, STATUS and GC print nothing on success). */
  stdout: string;
  exitCode: 0 | 1;
}

export interface PluginOptions {
  /** Where its warning lines go: stderr (the runtime's log of the plugin) unless a test collects them. */
  warn?: Warn;
  /**
   * Whether the library's notices (vcnet:notice) are warning lines too, `vcnet-cni ADD of C/IF: ...`
   * (default). false when something else writes them: VCNET_LOG_LEVEL's log lines (main.ts).
   */
  writeNotices?: boolean;
  /**
   * The open-file limit as the process started (main.ts reads it before loading the plugin), named
   * by the hint of an error that ran out of files; else read when such an error is answered.
   */
  openFileLimit?: OpenFileLimit | undefined;
}

/** The cniVersion of the input, for an error reply, when vcnet-cni speaks it. */
function versionOfInput(input: string): string {
  try {
    const asked = (JSON.parse(input) as { cniVersion?: unknown }).cniVersion;
    return isSupportedCniVersion(asked) ? asked : PREFERRED_CNI_VERSION;
  } catch {
    return PREFERRED_CNI_VERSION;
  }
}

/**
 * DEL, kept apart from config validation: it must free what ADD recorded whatever else the config
 * says, or the chain stops before the IPAM plugin releases the pod's address.
 */
async function deleteAttachment(input: string, env: Record<string, string | undefined>, warn: Warn): Promise<void> {
  const target = parseDeleteTarget(input, env);
  if (!target) return;
  await del(
    {
      environment: target.environment,
      config: { stateDirectory: target.stateDirectory, lockTimeoutMs: target.lockTimeoutMs },
    },
    warn,
  );
}

export async function runPlugin(
  input: string,
  env: Record<string, string | undefined>,
  options: PluginOptions = {},
): Promise<PluginOutcome> {
  const replyVersion = versionOfInput(input);
  const warn = options.warn ?? warnOnStandardError;
  // The library's notices of this command only, while it runs (a test may import the plugin).
  const reporting = <Result>(subject: string, interfaceName: string | undefined, work: () => Promise<Result>) =>
    options.writeNotices === false ? work() : writingNotices(subject, interfaceName, warn, work);
  // Run by hand with no command (`vcnet-cni`, `vcnet-cni --help`): say what it is, as libcni's skel
  // has every reference plugin do, rather than answer a runtime that is not there.
  if (!env.CNI_COMMAND) {
    warn(
      `vcnet-cni ${VCNET_VERSION}: vcnet's chained CNI plugin: after an interface plugin (bridge, ptp, macvlan) in a conflist it attaches CNI_IFNAME for a VM (a tap and tc redirects, or a macvtap) and adds the device to the result; a container runtime runs it with CNI_COMMAND and the config on stdin (docs/cni.md; \`vcnet install-cni\` puts it and a conflist in place)`,
    );
    warn(`CNI protocol versions supported: ${SUPPORTED_CNI_VERSIONS.join(', ')}`);
    return { stdout: '', exitCode: 0 };
  }
  try {
    if (env.CNI_COMMAND === 'DEL') {
      const about = `${env.CNI_CONTAINERID ?? ''}/${env.CNI_IFNAME ?? ''}`;
      await reporting(commandSubject('DEL', about), env.CNI_IFNAME, () => deleteAttachment(input, env, warn));
      return { stdout: '', exitCode: 0 };
    }
    const environment = parseEnvironment(env);
    if (environment.command === 'VERSION') return { stdout: JSON.stringify(versionReply(input)), exitCode: 0 };
    const raw = decodeConfig(input);
    const config = parseCniConfig(raw);
    requireCommandInVersion(environment.command, config.cniVersion);
    const request = { environment, config };
    const attachment = `${environment.containerId}/${environment.interfaceName}`;
    const network = `network ${config.name}`;
    switch (environment.command) {
      case 'ADD': {
        for (const warning of misspeltConfigKeys(raw)) warn(warningLine(commandSubject('ADD', attachment), warning));
        const result = await reporting(commandSubject('ADD', attachment), environment.interfaceName, () =>
          add(request, warn),
        );
        return { stdout: JSON.stringify(resultInVersion(result, config.cniVersion)), exitCode: 0 };
      }
      case 'CHECK':
        await reporting(commandSubject('CHECK', attachment), environment.interfaceName, () => check(request));
        return { stdout: '', exitCode: 0 };
      case 'STATUS':
        await reporting(commandSubject('STATUS', network), undefined, async () => status(config));
        return { stdout: '', exitCode: 0 };
      case 'GC':
        await reporting(commandSubject('GC', network), undefined, () =>
          garbageCollect(config, parseValidAttachments(raw), warn),
        );
        return { stdout: '', exitCode: 0 };
      case 'DEL':
        // handled above, before any validation
        return { stdout: '', exitCode: 0 };
    }
  } catch (error) {
    return {
      stdout: JSON.stringify(cniErrorReply(error, replyVersion, { openFileLimit: options.openFileLimit })),
      exitCode: 1,
    };
  }
}
