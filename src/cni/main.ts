#!/usr/bin/env node
/**
 * vcnet-cni: a chained CNI plugin that gives CNI_IFNAME to a VM (a tap joined by tc filters, or a
 * macvtap). Run by a container runtime with CNI_* variables and the network config on stdin; also
 * `node dist/cni/main.js`, the launcher `vcnet install-cni` writes to /opt/cni/bin, or (in development)
 * the src/cni/vcnet-cni wrapper placed in CNI_PATH.
 */
import { startObservability } from '../cli/observability/start.js';
import { runPlugin } from './plugin.js';

async function readStandardInput(): Promise<string> {
  // A person typing `CNI_COMMAND=VERSION vcnet-cni` on a terminal gets an answer instead of a wait.
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const stopObserving = await startObservability(process.env);
const outcome = await runPlugin(await readStandardInput(), process.env);
// The result goes out before the spans: exporting them (bounded, and never failing) must neither
// delay nor change what the runtime reads.
await new Promise<void>((resolve) =>
  process.stdout.write(outcome.stdout ? `${outcome.stdout}\n` : '', () => resolve()),
);
await stopObserving();
// Exit now: the runtime waits for the exit, and no handle (an export still in flight) may keep us alive.
process.exit(outcome.exitCode);
