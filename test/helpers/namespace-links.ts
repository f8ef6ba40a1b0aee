/**
 * Reads what the guest program scripts/guest-programs/namespace-links.ts printed on the test guest's console:
 * the kernel, its modules, each reply message of its dumps (checked against the count and SHA-256 it printed
 * last, so a kernel message landing in a line is found, not decoded) and what vcnet's scan made of each link.
 */
import { createHash } from 'node:crypto';
import type { GuestHandle } from './guest.js';

export interface NamespaceLinksScanLine {
  name: string;
  kind: string | null;
  skipped: string | null;
  endpointType: string | null;
  unsupported: string | null;
  notice: string | null;
}

/** What `--attach` printed: the endpoints' link names, and each link's flags before, attached and detached. */
export interface NamespaceLinksAttach {
  endpoints: string[];
  before: Record<string, number>;
  attached: Record<string, number>;
  detached: Record<string, number>;
}

export interface NamespaceLinks {
  kernel: string;
  modules: string[];
  messages: { links: string[]; addresses: string[]; routes: string[]; neighbours: string[] };
  scan: NamespaceLinksScanLine[];
  /** Present when the program ran with --attach. */
  attach?: NamespaceLinksAttach;
}

const PARTS = ['links', 'addresses', 'routes', 'neighbours'] as const;

/** Waits for the program's last line (or the guest command's failure) and parses what it printed. */
export async function readNamespaceLinks(guest: GuestHandle, timeoutMs: number): Promise<NamespaceLinks> {
  const last = await guest.waitForLine(/VCNET-LINKS-END (\d+) ([0-9a-f]{64})$|VCNET-CMD-EXIT ([1-9]\d*)$/, timeoutMs);
  if (last.match[3] !== undefined) {
    throw new Error(
      `the guest command failed (exit ${last.match[3]}):\n${guest.lines.slice(-30).join('\n')}\n(last 30 console lines)`,
    );
  }
  const lines = guest.lines.slice(0, last.index);
  const field = (prefix: string) => {
    const line = lines.find((text) => text.includes(`${prefix} `));
    if (line === undefined) throw new Error(`no ${prefix} line on the guest's console`);
    return line.slice(line.indexOf(`${prefix} `) + prefix.length + 1).trim();
  };
  const messages: NamespaceLinks['messages'] = { links: [], addresses: [], routes: [], neighbours: [] };
  const printed: string[] = [];
  const scan: NamespaceLinksScanLine[] = [];
  let attach: NamespaceLinksAttach | undefined;
  for (const line of lines) {
    const message = line.match(/VCNET-LINKS-MESSAGE (\w+) ([0-9a-f]+)$/);
    if (message) {
      const part = message[1] as (typeof PARTS)[number];
      if (!PARTS.includes(part)) throw new Error(`unknown dump ${part} in: ${line}`);
      messages[part].push(message[2]!);
      printed.push(message[2]!);
    }
    const scanned = line.match(/VCNET-LINKS-SCAN (\{.*\})$/);
    if (scanned) scan.push(JSON.parse(scanned[1]!) as NamespaceLinksScanLine);
    const attached = line.match(/VCNET-LINKS-ATTACH (\{.*\})$/);
    if (attached) attach = JSON.parse(attached[1]!) as NamespaceLinksAttach;
  }
  const digest = createHash('sha256').update(printed.join('\n')).digest('hex');
  if (printed.length !== Number(last.match[1]) || digest !== last.match[2]) {
    throw new Error(
      `the guest printed ${last.match[1]} messages (sha256 ${last.match[2]}), the console holds ${printed.length} intact ` +
        `(sha256 ${digest}): a kernel message or a lost byte broke a line; run again`,
    );
  }
  return {
    kernel: field('VCNET-LINKS-KERNEL'),
    modules: field('VCNET-LINKS-MODULES').split(','),
    messages,
    scan,
    ...(attach ? { attach } : {}),
  };
}
