/**
 * The guest agent program (src/agent/guest/main.ts) as a process, from source and as the esbuild bundle
 * the guest image carries: it serves a unix socket (--listen) and applies in a test namespace (--netns),
 * so the whole program runs here without a VM.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/agent/client.js';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { guestLikeNamespace } from '../../helpers/namespace-agent.js';

const root = new URL('../../../', import.meta.url).pathname;
const GUEST_MAC = '02:00:ca:fe:00:11';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  try {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  } finally {
    cleanupNamespaces();
  }
});

function temporaryDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-agent-main-'));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/** Starts the agent and stops it (SIGTERM, by its own pid) after the test; resolves its exit code. */
function startAgent(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  });
  return { child, output: () => output, exited };
}

async function driveAgent(socket: string, namespaceName: string, output: () => string): Promise<void> {
  const client = await AgentClient.connect(socket, { deadlineMs: 30_000, retryIntervalMs: 100 }).catch(
    (error: unknown) => {
      throw new Error(`${(error as Error).message}\nagent output:\n${output()}`);
    },
  );
  cleanups.push(() => client.close());
  await client.updateInterface({
    name: 'eth0',
    hwAddr: GUEST_MAC,
    mtu: 1450n,
    IPAddresses: [{ family: IPFamily.v4, address: '10.3.0.2', mask: '24' }],
  });
  await client.updateRoutes([{ dest: '', gateway: '10.3.0.1', device: 'eth0' }]);
  const [eth0] = JSON.parse(
    execFileSync('ip', ['-j', '-n', namespaceName, 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' }),
  ) as {
    mtu: number;
    flags: string[];
    addr_info: { local: string }[];
  }[];
  expect(eth0!.mtu).toBe(1450);
  expect(eth0!.flags).toContain('UP');
  expect(eth0!.addr_info.map((a) => a.local)).toContain('10.3.0.2');
  const routes = JSON.parse(
    execFileSync('ip', ['-j', '-n', namespaceName, 'route', 'show', 'default'], { encoding: 'utf8' }),
  ) as {
    gateway: string;
  }[];
  expect(routes[0]?.gateway).toBe('10.3.0.1');
}

function guestNamespace() {
  return guestLikeNamespace('test', { guestMac: GUEST_MAC });
}

describe('guest agent program', () => {
  it('runs from source: serves --listen, applies in --netns, stops cleanly on SIGTERM', async () => {
    const namespace = guestNamespace();
    const socket = join(temporaryDirectory(), 'agent.sock');
    const agent = startAgent([
      '--import',
      'tsx',
      'src/agent/guest/main.ts',
      '--listen',
      socket,
      '--netns',
      namespace.path,
    ]);
    await driveAgent(socket, namespace.name, agent.output);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(agent.output()).toContain('VCNET-AGENT-READY');
  });

  it('runs as the esbuild bundle laid out as in the guest image (/agent/main.js + the native addon)', async () => {
    const namespace = guestNamespace();
    const directory = temporaryDirectory();
    const agentDirectory = join(directory, 'agent');
    mkdirSync(join(agentDirectory, 'build/Release'), { recursive: true });
    execFileSync(
      join(root, 'node_modules/.bin/esbuild'),
      [
        'src/agent/guest/main.ts',
        '--bundle',
        '--platform=node',
        '--format=esm',
        '--target=node20',
        '--log-level=warning',
        `--outfile=${join(agentDirectory, 'main.js')}`,
        "--banner:js=import { createRequire as __vcnetCreateRequire } from 'node:module'; const require = __vcnetCreateRequire(import.meta.url);",
      ],
      { cwd: root },
    );
    writeFileSync(join(agentDirectory, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(agentDirectory, 'binding.gyp'), '{}\n');
    copyFileSync(
      join(root, 'build/Release/vcnet_native.node'),
      join(agentDirectory, 'build/Release/vcnet_native.node'),
    );
    const socket = join(directory, 'agent.sock');
    const agent = startAgent([join(agentDirectory, 'main.js'), '--listen', socket, '--netns', namespace.path]);
    await driveAgent(socket, namespace.name, agent.output);
  });
});
