/**
 * Versions of what a record holds inside its envelope (network-content-schema.ts checks them). A
 * leaf module: the endpoint and network code that writes these versions imports nothing back.
 */
export const NETWORK_STATE_VERSION = 1;
export const ENDPOINT_STATE_VERSION = 1;
