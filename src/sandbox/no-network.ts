/**
 * The notice of an attach that leaves the VM with no network: nothing attached, or only links with
 * no address (vcnet-cni's CNI_IFNAME of a chain without IPAM), whose guest NICs Kata's agent then
 * configures with no address. As Kata's "no network interfaces found", not an error (the runtime may
 * configure the pod later, the guest may configure its NIC itself), but never silent. attachSandbox
 * (and its dry run, planSandboxAttach) and vcnet-cni ADD say it from here. A link a user named with
 * `attach --interface` or add-iface is their choice (a layer-2 pod, a guest that runs DHCP), as with
 * Kata's add-iface: attach passes no `noAddress`, add-iface no advice, and neither says anything of it.
 */
import { channels, publish } from '../diagnostics.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { hasConfiguredAddress } from '../network/scan.js';

/** What the notice adds for its caller's input: why nothing was attached, how to give a link an address. */
export interface NoNetworkAdvice {
  /** After "no link of NS was attached": why, and what attaches one. Without it, an attach of nothing says nothing. */
  nothingAttached?: string;
  /** After "... gets no address": where the address should have come from, and what gives one. Without it, links without an address say nothing. */
  noAddress?: string;
}

/** The advice of attach and its dry run: only an attach of nothing is said. */
export const ATTACH_NO_NETWORK_ADVICE: NoNetworkAdvice = {
  nothingAttached: '(none has an address or was named with --interface); add-iface or attach --interface adds one',
};

/** The message, or undefined when the VM gets a network from what was attached. */
export function noNetworkMessage(
  attached: readonly Endpoint[],
  namespacePath: string,
  advice: NoNetworkAdvice,
): string | undefined {
  if (attached.length === 0) {
    if (advice.nothingAttached === undefined) return undefined;
    return `the VM gets no network: no link of ${namespacePath} was attached ${advice.nothingAttached}`;
  }
  if (advice.noAddress === undefined) return undefined;
  if (attached.some((endpoint) => hasConfiguredAddress(endpoint.properties))) return undefined;
  const names = attached.map((endpoint) => endpoint.properties.link.name);
  const [subject, verb, nic] =
    names.length === 1 ? [names[0], 'has', "the guest's NIC"] : [names.join(', '), 'have', "the guest's NICs"];
  return `the VM gets no network address: ${subject} ${verb} none in ${namespacePath} (an IPv6 link-local one does not count), so the guest agent configures ${nic} with none, and the VM reaches the pod's network only by configuring it itself (DHCP, a static address); ${advice.noAddress}`;
}

/** Publishes the notice on vcnet:notice when the VM gets no network from what was attached. */
export function noticeNoNetwork(
  operation: string,
  attached: readonly Endpoint[],
  namespacePath: string,
  advice: NoNetworkAdvice,
): void {
  publish(channels.notice, () => {
    const message = noNetworkMessage(attached, namespacePath, advice);
    if (message === undefined) return undefined;
    return { operation, endpoint: attached.map((endpoint) => endpoint.properties.link.name).join(','), message };
  });
}
