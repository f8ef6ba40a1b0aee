/**
 * Versions of what a record holds inside its envelope (network-content-schema.ts checks them). A
 * leaf module: the endpoint and network code that writes these versions imports nothing back.
 */
export const NETWORK_STATE_VERSION = 1;
/**
 * 2 since the required-steps rule (network-content-schema.ts): a finished endpoint's record has all of
 * its model's steps unless `partial` says an undo was refused in part. Version 1 records (which had no
 * `partial`) are still read, as partial where steps are missing.
 */
export const ENDPOINT_STATE_VERSION = 2;
