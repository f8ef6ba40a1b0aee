/**
 * Runs a real CNI plugin (from /usr/lib/cni) the way a kubelet's libcni does: config on stdin, the
 * CNI_* variables in the environment, the result on stdout. The plugin runs inside a "node"
 * namespace, so a bridge and its gateway address never land in the host's namespace.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { VcnetError } from '../errors.js';

const CNI_PLUGIN_DIRECTORY = '/usr/lib/cni';

export interface CniInvocation {
  nodeNamespace: string;
  plugin: string;
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  podNamespacePath: string;
  interfaceName: string;
  config: Record<string, unknown>;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  routes?: Array<{ dst: string; gw?: string }>;
}

export function cniPluginsAvailable(plugins: string[] = ['bridge', 'host-local']): string | undefined {
  const missing = plugins.filter((plugin) => !existsSync(`${CNI_PLUGIN_DIRECTORY}/${plugin}`));
  return missing.length === 0
    ? undefined
    : `CNI plugins missing in ${CNI_PLUGIN_DIRECTORY}: ${missing.join(', ')} (Debian package containernetworking-plugins)`;
}

export function runCniPlugin(invocation: CniInvocation): CniResult | undefined {
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: invocation.command,
    CNI_CONTAINERID: invocation.containerId,
    CNI_NETNS: invocation.podNamespacePath,
    CNI_IFNAME: invocation.interfaceName,
    CNI_PATH: CNI_PLUGIN_DIRECTORY,
  };
  try {
    const stdout = execFileSync(
      'ip',
      ['netns', 'exec', invocation.nodeNamespace, `${CNI_PLUGIN_DIRECTORY}/${invocation.plugin}`],
      {
        input: JSON.stringify(invocation.config),
        env,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    return stdout.trim() ? (JSON.parse(stdout) as CniResult) : undefined;
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    throw new VcnetError(
      'VCNET_CNI_PLUGIN_FAILED',
      `CNI plugin ${invocation.plugin} ${invocation.command} failed: ${failure.stdout || failure.stderr || failure.message}`,
      {
        value: invocation.plugin,
        hint: 'the plugin printed the reason above',
      },
    );
  }
}
