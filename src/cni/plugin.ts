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
  parseEnvironment,
  SUPPORTED_CNI_VERSIONS,
} from './config.js';
import { cniErrorReply } from './errors.js';

export interface PluginOutcome {
  /** JSON for stdout, or '' (DEL and CHECK print nothing on success). */
  stdout: string;
  exitCode: 0 | 1;
}

export interface VersionReply {
  cniVersion: string;
  supportedVersions: string[];
}

/** VERSION: answers in the version asked for when vcnet-cni speaks it. */
export function versionReply(input: string): VersionReply {
  let asked: unknown;
  try {
    asked = (JSON.parse(input) as { cniVersion?: unknown }).cniVersion;
  } catch {
    asked = undefined;
  }
  return {
    cniVersion: isSupportedCniVersion(asked) ? asked : PREFERRED_CNI_VERSION,
    supportedVersions: [...SUPPORTED_CNI_VERSIONS],
  };
}

export async function runPlugin(input: string, env: Record<string, string | undefined>): Promise<PluginOutcome> {
  let replyVersion: string = PREFERRED_CNI_VERSION;
  try {
    const environment = parseEnvironment(env);
    if (environment.command === 'VERSION') return { stdout: JSON.stringify(versionReply(input)), exitCode: 0 };
    const raw = decodeConfig(input);
    if (isSupportedCniVersion(raw.cniVersion)) replyVersion = raw.cniVersion;
    const config = parseCniConfig(raw);
    const request = { environment, config };
    switch (environment.command) {
      case 'ADD':
        return { stdout: JSON.stringify(await add(request)), exitCode: 0 };
      case 'DEL':
        await del(request);
        return { stdout: '', exitCode: 0 };
      case 'CHECK':
        await check(request);
        return { stdout: '', exitCode: 0 };
    }
  } catch (error) {
    return { stdout: JSON.stringify(cniErrorReply(error, replyVersion)), exitCode: 1 };
  }
}
