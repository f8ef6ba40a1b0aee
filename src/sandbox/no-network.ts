/**
 * The notice of an attach that leaves the VM with no network: nothing attached, or only links with
 * no address (a link named with `attach --interface`, vcnet-cni's CNI_IFNAME of a chain without
 * IPAM), whose guest NICs Kata's agent then configures with no address. As Kata's "no network
 * interfaces found", not an error (the runtime may configure the pod later, the guest may configure
 * its NIC itself), but never silent. attachSandbox, its dry run (planSandboxAttach), vcnet-cni ADD
 * and add-iface (about the one NIC it adds: `addedNic`) all say it from here.
 */
import { channels, publish } from '../diagnostics.js';
import type { Endpoint } from '../network/endpoint/endpoint.js';
import { hasConfiguredAddress } from '../network/scan.js';

/** What the notice adds for its caller's input: why nothing was attached, how to give a link an address. */
export interface NoNetworkAdvice {
  /** After "no link of NS was attached": why, and what attaches one. Without it, an attach of nothing says nothing. */
  nothingAttached?: string;
  /** After "... gets no address": where the address should have come from, and what gives one. */
  noAddress: string;
  /**
   * add-iface: about the one NIC added, not the VM (whose other NICs may have addresses): said when
   * that NIC gets none.
   */
  addedNic?: true;
}

/** The advice of attach and its dry run. */
export const ATTACH_NO_NETWORK_ADVICE: NoNetworkAdvice = {
  nothingAttached: '(none has an address or was named with --interface); add-iface or attach --interface adds one',
  noAddress:
    'named with --interface, attached anyway: give the pod link an address (`vcnet watch` sends it to the guest), or let the guest configure its NIC',
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
  if (attached.some((endpoint) => hasConfiguredAddress(endpoint.properties))) return undefined;
  if (advice.addedNic) {
    const name = attached.map((endpoint) => endpoint.properties.link.name).join(', ');
    return `the guest's NIC of ${name} gets no network address: ${name} has none in ${namespacePath} (an IPv6 link-local one does not count) and the request gave none, so the guest agent configures the NIC with none, and the VM reaches that network only by configuring it itself (DHCP, a static address); ${advice.noAddress}`;
  }
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
  const message = noNetworkMessage(attached, namespacePath, advice);
  if (message === undefined) return;
  publish(channels.notice, () => ({
    operation,
    endpoint: attached.map((endpoint) => endpoint.properties.link.name).join(','),
    message,
  }));
}
