/**
 * How long list-ifaces and list-routes wait for the VM's agent, connecting and answering, before
 * they answer the recorded view. Its own module: the CLI shows it as --timeout's default without
 * loading the agent's protobuf code.
 */
export const LIST_AGENT_TIMEOUT_MS = 3_000;
