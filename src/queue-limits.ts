/**
 * How many queues a NIC may have, shared by every layer that takes a queue count (the hypervisor's
 * device config, the CLI's --queues, the CNI config, the state files), with the one text they refuse with.
 */

/** The kernel's tun driver allows at most 256 queues per device. */
export const MAX_QUEUES = 256;
/** What every queues field and flag accepts. */
export const QUEUES_ACCEPTED = `an integer from 1 to ${MAX_QUEUES}`;
