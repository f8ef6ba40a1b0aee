/** The CLI's side of the hypervisor device configuration: parsing --hypervisor, and shell redirections. */
import { InvalidInputError } from '../errors.js';
import { HYPERVISORS, type HypervisorKind, type OpenedFile } from '../network/hypervisor-devices.js';

/** Names users type for a kind: the binary's own name. */
const HYPERVISOR_ALIASES: Record<string, HypervisorKind> = { 'cloud-hypervisor': 'clh' };

export function parseHypervisor(text: string): HypervisorKind {
  const kind = HYPERVISOR_ALIASES[text] ?? text;
  if (!(HYPERVISORS as readonly string[]).includes(kind))
    throw new InvalidInputError('--hypervisor', text, `${HYPERVISORS.join(', ')} (cloud-hypervisor is clh)`);
  return kind as HypervisorKind;
}

/** A shell's way to open them: `3<>/dev/tap70041`, appended to the printed command line. */
export function shellRedirections(fds: readonly OpenedFile[]): string {
  return fds.map((file) => `${file.fd}<>${file.path}`).join(' ');
}
