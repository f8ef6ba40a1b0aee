/**
 * One invocation of vcnet-cni as a runtime makes it: CNI_* variables and stdin in, what to print on
 * stdout and the exit status out. Kept apart from main.ts so tests call it without a process.
 */
import { add, check, del } from './commands.js';
import {
  decodeConfig,
  isSupportedCniVersion,
  PREFERRED_CNI_VERSION,
  parseCniConfig,
  parseDeleteTarget,
  parseEnvironment,
  requireCommandInVersion,
} from './config.js';
import { cniErrorReply } from './errors.js';
import { garbageCollect, parseValidAttachments } from './gc.js';
import { status } from './status.js';
import { resultInVersion, versionReply } from './version.js';

export { type VersionReply, versionReply } from './version.js';

export interface PluginOutcome {
  /** JSON for stdout, or '' (DEL, CHECK, STATUS and GC print nothing on success). */
  stdout: string;
  exitCode: 0 | 1;
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
async function deleteAttachment(input: string, env: Record<string, string | undefined>): Promise<void> {
  const target = parseDeleteTarget(input, env);
  if (!target) return;
  await del({
    environment: target.environment,
    config: { stateDirectory: target.stateDirectory, lockTimeoutMs: target.lockTimeoutMs },
  });
}

export async function runPlugin(input: string, env: Record<string, string | undefined>): Promise<PluginOutcome> {
  const replyVersion = versionOfInput(input);
  try {
    if (env.CNI_COMMAND === 'DEL') {
      await deleteAttachment(input, env);
      return { stdout: '', exitCode: 0 };
    }
    const environment = parseEnvironment(env);
    if (environment.command === 'VERSION') return { stdout: JSON.stringify(versionReply(input)), exitCode: 0 };
    const raw = decodeConfig(input);
    const config = parseCniConfig(raw);
    requireCommandInVersion(environment.command, config.cniVersion);
    const request = { environment, config };
    switch (environment.command) {
      case 'ADD':
        return { stdout: JSON.stringify(resultInVersion(await add(request), config.cniVersion)), exitCode: 0 };
      case 'CHECK':
        await check(request);
        return { stdout: '', exitCode: 0 };
      case 'STATUS':
        status(config);
        return { stdout: '', exitCode: 0 };
      case 'GC':
        await garbageCollect(config, parseValidAttachments(raw));
        return { stdout: '', exitCode: 0 };
      case 'DEL':
        // handled above, before any validation
        return { stdout: '', exitCode: 0 };
    }
  } catch (error) {
    return { stdout: JSON.stringify(cniErrorReply(error, replyVersion)), exitCode: 1 };
  }
}
