/**
 * The one table of vcnet's error codes. For each code: what it means, and what it becomes outside
 * vcnet: the CLI's exit status, the CNI plugin's error code and the agent's ttrpc (google.rpc) status.
 * The outward codes are named here and numbered by their owners (src/cli/exit-codes.ts,
 * src/cni/errors.ts, src/agent/ttrpc/status-code.ts), so this file imports nothing from the layers
 * above it. docs/troubleshooting.md lists every code (test/unit/errors.test.ts checks both agree).
 *
 * `role`: a `specific` code decides how a failure is reported even when it is the cause of another
 * error; a `general` one (a wrapper such as VCNET_ATTACH_FAILED, or a family such as VCNET_NETLINK)
 * decides only when nothing more specific is in the cause chain. See classifyError in errors.ts.
 */

/** vcnet's exit statuses, by name (numbers in src/cli/exit-codes.ts and docs/cli.md). */
export type ExitOutcome = 'FAILED' | 'BAD_INPUT' | 'NOT_PERMITTED' | 'LOCKED' | 'MISSING';

/** CNI error codes, by name: the spec's 1-11 and vcnet's own from 100 (numbers in src/cni/errors.ts). */
export type CniOutcome =
  | 'INCOMPATIBLE_VERSION'
  | 'UNSUPPORTED_FIELD'
  | 'INVALID_ENVIRONMENT'
  | 'DECODING_FAILURE'
  | 'INVALID_NETWORK_CONFIG'
  | 'TRY_AGAIN_LATER'
  | 'PLUGIN_NOT_AVAILABLE'
  | 'VCNET_FAILED'
  | 'INTERFACE_NOT_FOUND'
  | 'ALREADY_ADDED'
  | 'ATTACH_FAILED'
  | 'DETACH_INCOMPLETE'
  | 'CHECK_FAILED'
  | 'STATE_INVALID'
  | 'UNSUPPORTED_INTERFACE'
  | 'NOT_PERMITTED'
  | 'INTERNAL';

/** google.rpc status names the agent answers with (numbers in src/agent/ttrpc/status-code.ts). */
export type AgentOutcome =
  | 'CANCELLED'
  | 'RESOURCE_EXHAUSTED'
  | 'INVALID_ARGUMENT'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNAVAILABLE';

/**
 * A row of the error code registry `ErrorCodes`: what the code means, whether it is specific or a wrapper's,
 * and what the CLI exits with, what the CNI plugin answers and what the agent returns for it.
 */
export interface ErrorCodeInfo {
  readonly meaning: string;
  readonly role: 'specific' | 'general';
  readonly exit: ExitOutcome;
  readonly cni: CniOutcome;
  readonly agent: AgentOutcome;
}

const badInput = { exit: 'BAD_INPUT', cni: 'INVALID_NETWORK_CONFIG', agent: 'INVALID_ARGUMENT' } as const;
const unsupportedInterface = { exit: 'FAILED', cni: 'UNSUPPORTED_INTERFACE', agent: 'FAILED_PRECONDITION' } as const;
const failed = { exit: 'FAILED', cni: 'VCNET_FAILED', agent: 'INTERNAL' } as const;

/** Freezes `value` and every object in it. */
function deepFreeze<T extends object>(value: T): T {
  for (const member of Object.values(value)) {
    if (typeof member === 'object' && member !== null) deepFreeze(member);
  }
  return Object.freeze(value);
}

/**
 * The registry of error codes: for each, what it means, the CLI's exit, the CNI error code and the
 * agent's status (docs/troubleshooting.md lists them). Frozen, deeply: it decides these for every user
 * of this copy of vcnet, so one caller must not be able to change them for the others.
 */
export const ErrorCodes = deepFreeze({
  // Input and configuration
  VCNET_INVALID_INPUT: {
    meaning: 'a flag, file or field has a value vcnet does not accept',
    role: 'specific',
    ...badInput,
  },
  VCNET_CONFIG_CONFLICT: { meaning: 'settings that cannot go together', role: 'specific', ...badInput },
  VCNET_CONFIG_SYNTAX: { meaning: 'configuration.toml is not valid TOML', role: 'specific', ...badInput },
  VCNET_STATE_INVALID: {
    meaning: 'a state file vcnet cannot read',
    role: 'specific',
    exit: 'FAILED',
    cni: 'STATE_INVALID',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_STATE_WRITE: {
    meaning: 'a state record could not be written (disk full, read-only, I/O error); the old one stays',
    role: 'specific',
    exit: 'FAILED',
    cni: 'TRY_AGAIN_LATER',
    agent: 'UNAVAILABLE',
  },
  VCNET_STATE_DIR: {
    meaning:
      "a state directory (--state-dir, VCNET_STATE_DIR) that is empty, cannot be made, or that another user could change (not owned by vcnet's user, or group/other-writable)",
    role: 'specific',
    ...badInput,
  },
  // The namespace and its interfaces
  VCNET_NETNS_INVALID: {
    meaning: 'a namespace path that is not a network namespace (missing, empty, FIFO, file, directory)',
    role: 'specific',
    ...badInput,
  },
  VCNET_NETNS_CHANGED: {
    meaning: 'the recorded namespace path now names another namespace (identity differs)',
    role: 'specific',
    exit: 'FAILED',
    cni: 'STATE_INVALID',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_NETNS_GONE: {
    meaning: 'the namespace a record names no longer exists',
    role: 'specific',
    exit: 'FAILED',
    cni: 'STATE_INVALID',
    agent: 'NOT_FOUND',
  },
  VCNET_NETNS_UNSEEN: {
    meaning:
      'whether the namespace a record names still exists cannot be told: processes that may hold it could not be looked into (no CAP_SYS_PTRACE, /proc mounted with hidepid=)',
    role: 'specific',
    exit: 'NOT_PERMITTED',
    cni: 'NOT_PERMITTED',
    agent: 'PERMISSION_DENIED',
  },
  VCNET_HOST_NAMESPACE: {
    meaning: "the namespace given is vcnet's own (the host's), by nsfs device and inode",
    role: 'specific',
    ...badInput,
  },
  VCNET_LINK_NOT_FOUND: {
    meaning: 'no link of that name or index',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'NOT_FOUND',
  },
  VCNET_LINK_NAME_TAKEN: {
    meaning: 'a link vcnet must create (tap, macvtap, ifb) is named like one already in the namespace',
    role: 'specific',
    exit: 'FAILED',
    cni: 'ATTACH_FAILED',
    agent: 'ALREADY_EXISTS',
  },
  VCNET_ROUTE_NOT_RESTORABLE: {
    meaning:
      'the macvtap model would remove a route of the pod link that it could not put back (an lwtunnel encapsulation)',
    role: 'specific',
    ...unsupportedInterface,
  },
  VCNET_UNSUPPORTED_INTERFACE: {
    meaning: 'an interface of a kind vcnet cannot connect to a VM',
    role: 'specific',
    ...unsupportedInterface,
  },
  VCNET_TUN_UNSUPPORTED: { meaning: 'a tun (layer 3) device', role: 'specific', ...unsupportedInterface },
  VCNET_TUNTAP_MODE_UNKNOWN: {
    meaning: 'the kernel did not say whether a tun device is tun or tap',
    role: 'specific',
    ...unsupportedInterface,
  },
  VCNET_VHOST_USER_SOCKET_MISSING: {
    meaning: 'no vhost-user socket for the interface',
    role: 'specific',
    ...unsupportedInterface,
  },
  VCNET_PHYSICAL_UNSUPPORTED: {
    meaning: 'the chosen hypervisor cannot take a physical NIC (VFIO pass-through)',
    role: 'specific',
    exit: 'FAILED',
    cni: 'UNSUPPORTED_INTERFACE',
    agent: 'UNIMPLEMENTED',
  },
  VCNET_VFIO: {
    meaning: 'a physical NIC could not be handed to vfio-pci (or back to its driver)',
    role: 'specific',
    ...failed,
  },
  VCNET_MACVTAP_DEVICE: {
    meaning: "a macvtap's /dev/tap<index> is not its own, or no unique index was found",
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'FAILED_PRECONDITION',
  },
  // Attaching and detaching
  VCNET_ATTACH_FAILED: {
    meaning: 'one step of an attach was refused; what it made was removed',
    role: 'general',
    exit: 'FAILED',
    cni: 'ATTACH_FAILED',
    agent: 'INTERNAL',
  },
  VCNET_INGRESS_BUSY: {
    meaning: 'the kernel kept answering EBUSY to an ingress qdisc (5 tries): another tc user holds the hook',
    role: 'specific',
    exit: 'FAILED',
    cni: 'TRY_AGAIN_LATER',
    agent: 'UNAVAILABLE',
  },
  VCNET_ROLLBACK_INCOMPLETE: {
    meaning: 'an attach or add-iface failed and undoing it was refused too: the record keeps what is left',
    role: 'specific',
    exit: 'FAILED',
    cni: 'ATTACH_FAILED',
    agent: 'INTERNAL',
  },
  VCNET_DETACH_INCOMPLETE: {
    meaning: 'some recorded changes could not be undone; the state file keeps them',
    role: 'specific',
    exit: 'FAILED',
    cni: 'DETACH_INCOMPLETE',
    agent: 'INTERNAL',
  },
  VCNET_SANDBOX_EXISTS: {
    meaning: 'the sandbox id is already attached',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'ALREADY_EXISTS',
  },
  VCNET_INTERFACE_ALREADY_ADDED: {
    meaning:
      'add-iface of an interface the sandbox already has, made from the same link (an add-iface killed after its attach)',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'ALREADY_EXISTS',
  },
  VCNET_SANDBOX_NOT_FOUND: {
    meaning: 'no sandbox of that id is recorded',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'NOT_FOUND',
  },
  VCNET_SANDBOX_LOCKED: {
    meaning: 'another vcnet process is changing this sandbox',
    role: 'specific',
    exit: 'LOCKED',
    cni: 'TRY_AGAIN_LATER',
    agent: 'ABORTED',
  },
  // The kernel and the native shim
  VCNET_NETLINK: {
    meaning: 'the kernel refused a netlink request; `errno` names why',
    role: 'general',
    ...failed,
  },
  VCNET_NETLINK_DUMP_INTERRUPTED: {
    meaning: 'the namespace changed during every attempt at a dump (NLM_F_DUMP_INTR): nothing half-read was used',
    role: 'specific',
    exit: 'FAILED',
    cni: 'TRY_AGAIN_LATER',
    agent: 'UNAVAILABLE',
  },
  VCNET_NETLINK_DUMP_OVERRUN: {
    meaning:
      "a receive failed with ENOBUFS (the socket's queue overflowed) during every attempt at a dump: nothing half-read was used",
    role: 'specific',
    exit: 'FAILED',
    cni: 'TRY_AGAIN_LATER',
    agent: 'UNAVAILABLE',
  },
  VCNET_HANDLE_CLOSED: {
    meaning: 'a NetlinkHandle used after its close()',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_NETLINK_MALFORMED: {
    meaning: "the kernel's reply could not be parsed",
    role: 'specific',
    ...failed,
  },
  VCNET_SYSCALL: {
    meaning: 'a system call of the native shim failed; `errno` names why',
    role: 'general',
    ...failed,
  },
  VCNET_NATIVE_MISSING: {
    meaning: 'the N-API shim was not built',
    role: 'specific',
    exit: 'MISSING',
    cni: 'VCNET_FAILED',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_PROGRAM_MISSING: {
    meaning: 'a program vcnet runs (ip or tc, from iproute2) is not installed or not where it looks',
    role: 'specific',
    exit: 'MISSING',
    cni: 'VCNET_FAILED',
    agent: 'FAILED_PRECONDITION',
  },
  // Hypervisor
  VCNET_QMP_CONNECTION: {
    meaning: 'the QMP socket cannot be reached or closed',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'UNAVAILABLE',
  },
  VCNET_QMP_COMMAND: { meaning: 'QEMU refused a command', role: 'specific', ...failed },
  VCNET_QMP_TIMEOUT: {
    meaning: 'QEMU did not answer in time',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'DEADLINE_EXCEEDED',
  },
  VCNET_HOTPLUG_FAILED: { meaning: 'plugging a NIC into the running VM failed', role: 'general', ...failed },
  VCNET_HOTPLUG_ID_TAKEN: {
    meaning:
      'the running VM already has a NIC or netdev under the id vcnet gives a new NIC, and no endpoint records it',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'ALREADY_EXISTS',
  },
  VCNET_HOTPLUG_NO_SLOT: {
    meaning: 'the running VM has no free place to hot-plug a NIC into (vcnet ports all taken, or none given at boot)',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'RESOURCE_EXHAUSTED',
  },
  VCNET_UNPLUG_TIMEOUT: {
    meaning: 'the guest did not release the NIC in time',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'DEADLINE_EXCEEDED',
  },
  VCNET_QEMU_PROCESS: { meaning: 'QEMU could not be started or exited early', role: 'specific', ...failed },
  VCNET_HYPERVISOR_UNSUPPORTED: {
    meaning: 'the hypervisor cannot do what was asked',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'UNIMPLEMENTED',
  },
  VCNET_HYPERVISOR_REFUSED: {
    meaning: 'Cloud Hypervisor answered an API request with an error status',
    role: 'specific',
    ...failed,
  },
  VCNET_HYPERVISOR_UNREACHABLE: {
    meaning: "Cloud Hypervisor's API socket could not be reached or did not answer HTTP",
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'UNAVAILABLE',
  },
  VCNET_GUEST_IMAGE: { meaning: 'building the test/demo guest image failed', role: 'specific', ...failed },
  // Agent
  VCNET_AGENT_STATUS: {
    meaning: 'a ttrpc call to the agent did not succeed; `statusName` names the status',
    role: 'general',
    ...failed,
  },
  VCNET_AGENT_CONNECT: {
    meaning: "the agent's socket could not be reached before the deadline",
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'UNAVAILABLE',
  },
  VCNET_AGENT_PORT_NOT_FOUND: {
    meaning: 'inside the guest: no virtio-serial port for the agent',
    role: 'specific',
    exit: 'FAILED',
    cni: 'VCNET_FAILED',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_AGENT_APPLY_FAILED: { meaning: 'the agent could not apply a request', role: 'general', ...failed },
  VCNET_GUEST_PROGRAM_MISSING: {
    meaning:
      'inside the guest: a program the agent runs (iptables-save, iptables-restore, ip6tables-save, ip6tables-restore; nsenter for an agent serving another namespace) is not on its PATH',
    role: 'specific',
    exit: 'MISSING',
    cni: 'VCNET_FAILED',
    agent: 'NOT_FOUND',
  },
  VCNET_IPTABLES_FAILED: {
    meaning: 'inside the guest: iptables-save or iptables-restore (ip6tables-*) failed; the message carries its stderr',
    role: 'specific',
    ...failed,
  },
  // Demo
  VCNET_DEMO_FAILED: { meaning: '`vcnet demo` stopped at a step', role: 'general', ...failed },
  VCNET_CNI_PLUGIN_FAILED: { meaning: 'a real CNI plugin run by the demo failed', role: 'specific', ...failed },
  // CNI plugin
  VCNET_CNI_CONFIG: {
    meaning: 'the network configuration (or prevResult) is invalid',
    role: 'specific',
    exit: 'BAD_INPUT',
    cni: 'INVALID_NETWORK_CONFIG',
    agent: 'INVALID_ARGUMENT',
  },
  VCNET_CNI_UNSUPPORTED_FIELD: {
    meaning: "an unknown key in the plugin's configuration",
    role: 'specific',
    exit: 'BAD_INPUT',
    cni: 'UNSUPPORTED_FIELD',
    agent: 'INVALID_ARGUMENT',
  },
  VCNET_CNI_VERSION: {
    meaning: 'a cniVersion the plugin does not speak',
    role: 'specific',
    exit: 'BAD_INPUT',
    cni: 'INCOMPATIBLE_VERSION',
    agent: 'INVALID_ARGUMENT',
  },
  VCNET_CNI_DECODE: {
    meaning: 'stdin is not a JSON object',
    role: 'specific',
    exit: 'BAD_INPUT',
    cni: 'DECODING_FAILURE',
    agent: 'INVALID_ARGUMENT',
  },
  VCNET_CNI_ENVIRONMENT: {
    meaning: 'a CNI_* variable is missing or wrong',
    role: 'specific',
    exit: 'BAD_INPUT',
    cni: 'INVALID_ENVIRONMENT',
    agent: 'INVALID_ARGUMENT',
  },
  VCNET_CNI_INTERFACE_NOT_FOUND: {
    meaning: 'CNI_IFNAME is not in CNI_NETNS',
    role: 'specific',
    exit: 'FAILED',
    cni: 'INTERFACE_NOT_FOUND',
    agent: 'NOT_FOUND',
  },
  VCNET_CNI_ALREADY_ADDED: {
    meaning: 'ADD for a container and interface already attached, or whose earlier ADD did not complete',
    role: 'specific',
    exit: 'FAILED',
    cni: 'ALREADY_ADDED',
    agent: 'ALREADY_EXISTS',
  },
  VCNET_CNI_CHECK_FAILED: {
    meaning: 'CHECK found the plumbing different from what ADD recorded',
    role: 'specific',
    exit: 'FAILED',
    cni: 'CHECK_FAILED',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_CNI_NO_TAP: {
    meaning: 'ADD: CNI_IFNAME is a physical or vhost-user interface, which a VM uses without a tap',
    role: 'specific',
    exit: 'FAILED',
    cni: 'UNSUPPORTED_INTERFACE',
    agent: 'FAILED_PRECONDITION',
  },
  VCNET_CNI_NOT_AVAILABLE: {
    meaning: 'STATUS: the state directory is not writable or /dev/net/tun is not usable',
    role: 'specific',
    exit: 'FAILED',
    cni: 'PLUGIN_NOT_AVAILABLE',
    agent: 'UNAVAILABLE',
  },
  VCNET_CNI_NOT_BUILT: {
    meaning: 'vcnet install-cni found no built plugin (dist/cni/main.js)',
    role: 'specific',
    exit: 'MISSING',
    cni: 'INTERNAL',
    agent: 'FAILED_PRECONDITION',
  },
  // Not vcnet's own
  VCNET_ERROR: {
    meaning: "an error that is not one of vcnet's own (a bug)",
    role: 'general',
    exit: 'FAILED',
    cni: 'INTERNAL',
    agent: 'INTERNAL',
  },
} as const satisfies Record<string, ErrorCodeInfo>);

/**
 * One of vcnet's stable error codes (`VCNET_...`), the keys of `ErrorCodes`; docs/troubleshooting.md explains
 * each.
 */
export type ErrorCode = keyof typeof ErrorCodes;

/**
 * Failures whose errno says more than the error around them: "run as root" is the answer wherever
 * an EPERM surfaces (a netlink request, a system call, a file), however deeply it is wrapped.
 */
export const ErrnoOutcomes = deepFreeze({
  EPERM: { exit: 'NOT_PERMITTED', cni: 'NOT_PERMITTED', agent: 'PERMISSION_DENIED' },
  EACCES: { exit: 'NOT_PERMITTED', cni: 'NOT_PERMITTED', agent: 'PERMISSION_DENIED' },
} as const satisfies Record<string, Omit<ErrorCodeInfo, 'meaning' | 'role'>>);

/** Whether `code` is a code of the registry (ErrorCodes). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ErrorCodes, code);
}
