/**
 * vcnet's library entry, `import { attachSandbox } from 'vcnet'`: the sandbox and network functions,
 * endpoints and guest structures, the hypervisor and agent clients, NetlinkHandle, every error class
 * a caller can receive, the error classifier and the diagnostics channel names.
 *
 * The rtnetlink codec (message encoders and decoders, kernel constants) is its own entry,
 * `import { encodeNewLink, LinkAttribute } from 'vcnet/netlink'` (src/netlink/index.ts).
 */

// The guest agent (Kata agent protocol over ttrpc): the client, the server side and their errors.
export {
  AgentClient,
  type AgentClientOptions,
  type InterfaceInit,
  type IpTablesCallOptions,
  type NeighbourInit,
  type RouteInit,
} from './agent/client.js';
export {
  AgentConnectError,
  AgentPortNotFoundError,
  AgentStatusError,
  GuestLinkNotFoundError,
  GuestProgramMissingError,
  GuestRestoreError,
  IpTablesCommandError,
  NetworkApplyError,
} from './agent/errors.js';
export type {
  ARPNeighbor as AgentNeighbour,
  Interface as AgentInterface,
  IPAddress as AgentIpAddress,
  Route as AgentRoute,
} from './agent/generated/types_pb.js';
export { IPFamily as AgentIpFamily } from './agent/generated/types_pb.js';
export type { HybridVsockOptions } from './agent/hybrid-vsock.js';
// Kata's JSON for interfaces, routes and neighbours (kata-runtime's `kata-network` commands).
export {
  interfaceFromJson,
  interfaceToJson,
  type JsonIssue,
  type KataFamilyJson,
  type KataInterfaceJson,
  type KataIpAddressJson,
  KataJsonError,
  type KataJsonReadOptions,
  type KataNeighbourJson,
  type KataRouteJson,
  neighbourFromJson,
  neighboursFromJson,
  neighbourToJson,
  routeFromJson,
  routesFromJson,
  routeToJson,
} from './agent/kata-network-json.js';
export type {
  AddressAssignment,
  InterfaceUpdate,
  IpTablesApplier,
  IpVersion,
  NeighbourAddition,
  NetworkApplier,
  RouteUpdate,
} from './agent/network-applier.js';
export { type AgentServerOptions, createAgentServer } from './agent/server.js';
export type { CallOptions } from './agent/ttrpc/client.js';
// The ttrpc server createAgentServer returns, and what its methods name (types only: createAgentServer makes it).
export type { UnaryMethod as TtrpcUnaryMethod } from './agent/ttrpc/method.js';
export type {
  CallContext as TtrpcCallContext,
  Status as TtrpcStatus,
  TtrpcConnection,
  TtrpcServer,
  TtrpcServerOptions,
  UnaryHandler as TtrpcUnaryHandler,
} from './agent/ttrpc/server.js';
export type { UnixConnectOptions } from './agent/unix-socket-connect.js';
// Observability: the diagnostics channels to subscribe to, and their events.
export {
  type AttachEvent,
  type ChannelListener,
  channels,
  type DetachEvent,
  DiagnosticsChannel,
  type DiagnosticsChannelName,
  type DiagnosticsPlainChannel,
  type DiagnosticsTracingChannel,
  type EndpointEvent,
  type FailedEvent,
  type NetlinkBatchEvent,
  type NetlinkDumpRetriedEvent,
  type NoticeEvent,
  type PlanStepEvent,
  type ScanEvent,
  type SettledEvent,
  type TracingHandlers,
  tracing,
  type WatchEvent,
} from './diagnostics.js';
// Errors: the base class, the registry of codes and the one classifier.
export {
  type AgentOutcome,
  type CniOutcome,
  causeChain,
  classifyError,
  type DetachFinishedBy,
  DetachIncompleteError,
  type ErrorClassification,
  type ErrorCode,
  type ErrorCodeInfo,
  ErrorCodes,
  type ExitOutcome,
  errnoOf,
  type FieldIssue,
  InvalidFieldsError,
  InvalidInputError,
  isErrorCode,
  NamespacePathError,
  RollbackIncompleteError,
  SystemCallError,
  VcnetError,
  type VcnetErrorOptions,
} from './errors.js';
// Hypervisors: QEMU (arguments, process, QMP, hot-plug), Cloud Hypervisor and Firecracker request
// bodies, listed one by one so that the layer's helpers (patterns, fd slot maps, ids) stay internal.
export {
  type CloudHypervisorApiRequest,
  type CloudHypervisorBucketSetting,
  type CloudHypervisorNetConfig,
  type CloudHypervisorNetOptions,
  type CloudHypervisorRateLimiterConfig,
  type CloudHypervisorRemoveDevice,
  cloudHypervisorAddNetRequest,
  cloudHypervisorNetArgument,
  cloudHypervisorNetConfig,
  cloudHypervisorRateLimiterConfig,
  cloudHypervisorRemoveDeviceRequest,
} from './hypervisor/cloud-hypervisor.js';
export {
  CloudHypervisorApiError,
  CloudHypervisorConnectionError,
  type CloudHypervisorFailure,
} from './hypervisor/cloud-hypervisor-client.js';
export {
  type HotplugTarget,
  type NetworkDevice,
  type NetworkRateLimit,
  type PciSlot,
  parsePciAddress,
  validateNetworkDevice,
} from './hypervisor/device.js';
export {
  DeviceNotHotpluggableError,
  DeviceUnplugTimeoutError,
  HotplugCapacityError,
  NetworkHotplugError,
  QemuProcessError,
  QmpCommandError,
  QmpConnectionError,
  QmpTimeoutError,
  UnsupportedByHypervisorError,
} from './hypervisor/errors.js';
export {
  type FirecrackerApiRequest,
  type FirecrackerNetworkInterface,
  type FirecrackerNetworkOptions,
  type FirecrackerRateLimiter,
  firecrackerInterfaceId,
  firecrackerNetworkInterface,
  firecrackerNetworkInterfaceRequest,
} from './hypervisor/firecracker.js';
export { GuestImageError } from './hypervisor/guest-image.js';
export { type KvmProbeOptions, type KvmProbeResult, probeKvm, probeKvmWithReason } from './hypervisor/kvm-probe.js';
export {
  type QemuNicOptions,
  qemuNetdevId,
  qemuNetdevOption,
  qemuNetworkArguments,
  qemuNicDeviceOption,
  qemuVfioArguments,
  type VfioPciDevice,
  validateVfioPciDevice,
} from './hypervisor/qemu.js';
export { type QemuMachineType, qemuHotplugPortArguments } from './hypervisor/qemu-hotplug-ports.js';
export {
  buildQemuCommand,
  type QemuCommand,
  type QemuExit,
  type QemuLaunchOptions,
  QemuProcess,
  spawnQemu,
} from './hypervisor/qemu-process.js';
export {
  QmpClient,
  type QmpClientEvents,
  type QmpConnectOptions,
  type QmpEvent,
  type QmpExecuteOptions,
  type QmpGreeting,
  type QmpWaitForEventOptions,
} from './hypervisor/qmp.js';
export {
  type HotpluggedNetworkDevice,
  type HotplugOptions,
  hotplugNetworkDevice,
  hotplugVfioDevice,
  type NetworkHotplugCommands,
  networkHotplugCommands,
  QemuHotplugSessions,
  QemuNetworkHotplugTarget,
  type UnplugOptions,
  unplugNetworkDevice,
} from './hypervisor/qmp-network-hotplug.js';
export type { TokenBucket } from './hypervisor/rate-limiter.js';
export { randomPrivateMacAddress } from './mac-address.js';
export type { Address, AddressSpec } from './netlink/codec/address.js';
export { AddressFormatError } from './netlink/codec/address-format.js';
export type { TunInfo } from './netlink/codec/link/tun.js';
export type { Link, LinkChanges, LinkKindData, LinkSpec } from './netlink/codec/link.js';
export type { Neighbour, NeighbourSpec } from './netlink/codec/neighbour.js';
export { MalformedMessageError } from './netlink/codec/reader.js';
export type { Route, RouteSpec } from './netlink/codec/route.js';
export type { TcAction } from './netlink/codec/tc/action.js';
export type { Filter, FilterSpec } from './netlink/codec/tc/filter.js';
export type { HtbClassSpec, TrafficClass } from './netlink/codec/tc/qdisc/htb.js';
export type { Qdisc, QdiscSpec } from './netlink/codec/tc/qdisc.js';
export {
  DumpInterruptedError,
  DumpOverrunError,
  LinkNotFoundError,
  NetlinkClosedError,
  NetlinkError,
} from './netlink/errors.js';
export {
  type ChangeBatch,
  type DeleteFilterTarget,
  type NamespaceSnapshot,
  NetlinkHandle,
  type RouteFilter,
  type SnapshotPart,
} from './netlink/handle.js';
export type { RequestOutcome } from './netlink/protocol.js';
export { HostNamespaceError, isHostNamespace } from './netns/host-namespace.js';
// Namespaces and netlink: the handle and the types it takes and returns (the codec: 'vcnet/netlink').
export {
  createNamespace,
  deleteNamespace,
  namespacePath,
  openNamespace,
} from './netns/namespace.js';
export { type NamespaceHoldersUnseen, NamespaceUnseenError } from './netns/namespace-holders.js';
export {
  NamespaceChangedError,
  NamespaceGoneError,
  type NamespaceIdentity,
  NETNS_RUN_DIRECTORY,
  RecordedIdentityDamagedError,
} from './netns/namespace-identity.js';
// The network of one sandbox: configuration, scan, endpoints, models, guest structures.
export {
  ConfigurationConflictError,
  defineNetworkConfig,
  type KataConfigOverrides,
  type KataDropIn,
  type KataHypervisor,
  type KataNetworkConfigOptions,
  type KataNetworkSettings,
  type NetworkConfig,
  type NetworkConfigOptions,
  networkConfigFromKata,
  parseKataConfiguration,
  readKataConfiguration,
  type VmmBucketSetting,
  type VmmRateLimiter,
  validateNetworkConfig,
} from './network/config.js';
export {
  type CreateEndpointOptions,
  classifyInterface,
  createEndpoint,
  UnsupportedInterfaceError,
} from './network/endpoint/create-endpoint.js';
export {
  Endpoint,
  type EndpointState,
  EndpointStateError,
  type VmNetworkDevice,
} from './network/endpoint/endpoint.js';
export { PhysicalDeviceUnsupportedError } from './network/endpoint/physical-endpoint.js';
export { collectGarbage, type GarbageOptions } from './network/garbage-collector.js';
export type {
  GarbageFailure,
  GarbageItem,
  GarbageReport,
  InUseLink,
  LeftAloneItem,
} from './network/gc/report.js';
export {
  GuestFamily,
  type GuestFamilyValue,
  type GuestInterface,
  type GuestIpAddress,
  type GuestNeighbour,
  type GuestNetwork,
  type GuestRoute,
  generateGuestNetwork,
} from './network/guest.js';
export {
  type DeviceConfig,
  HYPERVISORS,
  type HypervisorDeviceOptions,
  type HypervisorKind,
  hypervisorDeviceConfig,
  type OpenedFile,
  plannedDeviceConfig,
} from './network/hypervisor-devices.js';
export { IngressQdiscBusyError } from './network/ingress-qdisc.js';
export type { NetworkInterfacePair, TapInterface, VirtualInterface } from './network/interface-pair.js';
export {
  type InterworkingModel,
  type InterworkingModelName,
  parseInterworkingModel,
} from './network/interworking-model.js';
export { AttachError, type AttachedPlumbing, type PlumbingContext } from './network/model/plumbing-context.js';
export { type AddEndpointsOptions, Network, type NetworkState, type SkippedNotice } from './network/network.js';
export type { DnsInfo, EndpointType, NetworkInfo } from './network/network-info.js';
export { MacvtapDeviceError } from './network/plan/macvtap-index.js';
export {
  type AttachRequest,
  LinkNameTakenError,
  type LinkOwnerRecord,
  type PlanSnapshot,
} from './network/plan/plan-attach.js';
export type { DetachNotice, DetachPlan, DetachStep, KeptRecord } from './network/plan/plan-detach.js';
export type { TrafficControlRepair } from './network/plan/plan-tc-repair.js';
export { RouteNotRestorableError } from './network/plan/pod-link-routes.js';
export type {
  AddressRecord,
  Change,
  LinkAttributes,
  LinkRef,
  LinkRole,
  NeighbourRecord,
  NextHopRecord,
  Plan,
  PlanStep,
  PlumbingStep,
  PodLinkRecord,
  RateLimit,
  RecordedLinkAttributes,
  RouteRecord,
} from './network/plan/types.js';
export type { AttachOperation, UndoReport } from './network/plan/undo.js';
export { readSandbox } from './network/recorded-network.js';
export {
  classifyScan,
  type NamespaceScan,
  type ScannedInterface,
  type ScanOptions,
  scanNamespace,
} from './network/scan.js';
export { StateWriteError } from './network/state/atomic-file.js';
export { type EarlierBoot, RecordFromEarlierBootError } from './network/state/boot-id.js';
export { DirectoryNotMadeError } from './network/state/directory.js';
export { LockFileRefusedError } from './network/state/lock.js';
export { NamespaceBusyError } from './network/state/namespace-lock.js';
export type { ClaimsOnlyDirectory, SkippedRecord } from './network/state/owners.js';
export { StateInvalidError } from './network/state/record-envelope.js';
// Sandboxes: attach, detach, and changes to an attached one (what the CLI and the CNI plugin call).
export type {
  GuestPending,
  GuestPendingCommand,
  HypervisorRecord,
  PidNamespaceId,
  SandboxState,
  UnplugUnfinished,
} from './network/state/records.js';
export { StateRegistryLockedError } from './network/state/registry.js';
export { SandboxLockedError } from './network/state/store.js';
export { StateDirectoryError } from './network/state/trust.js';
export { type HostRoots, VfioError } from './network/vfio.js';
export {
  type AddInterfaceSandbox,
  type AlreadyAddedStage,
  IncorrectLinkTypeError,
  InterfaceAlreadyAddedError,
} from './sandbox/add-interface-request.js';
export {
  type AttachResult,
  type AttachSandboxOptions,
  attachSandbox,
  SandboxExistsError,
} from './sandbox/attach.js';
export {
  type ConfigureGuestOptions,
  type ConfigureGuestResult,
  configureGuest,
} from './sandbox/configure-guest.js';
export {
  type DetachHotplugConnect,
  type DetachResult,
  type DetachSandboxOptions,
  detachSandbox,
} from './sandbox/detach.js';
export { HotplugIdTakenError } from './sandbox/hotplug-id-taken.js';
export { FirecrackerNoHotplugError } from './sandbox/hypervisor-connection.js';
export {
  type ListSandboxesOptions,
  listSandboxes,
  type SandboxListing,
  type SandboxListingEndpoint,
  type SandboxListingState,
} from './sandbox/list.js';
export { NamespaceHeldError, UnrecordedGroupLinkError } from './sandbox/namespace-hold.js';
export {
  type PlannedAttach,
  type PlannedDetach,
  type PlannedEndpoint,
  type PlanSandboxAttachOptions,
  type PlanSandboxDetachOptions,
  planSandboxAttach,
  planSandboxDetach,
} from './sandbox/plan.js';
export {
  type AddInterfaceResult,
  AgentNotRecordedError,
  addInterface,
  type KataNetworkOptions,
  type ListOptions,
  listInterfaces,
  listRoutes,
  removeInterface,
  SandboxNotFoundError,
  updateRoutes,
} from './sandbox/sandbox-interfaces.js';
// `kata-runtime iptables get|set`: the guest's packet filter rules through the sandbox's agent.
export { getIpTables, type IpTablesOptions, setIpTables } from './sandbox/sandbox-iptables.js';
// Watching a sandbox's namespace and passing its changes on to the VM (`vcnet watch`).
export {
  type SandboxWatch,
  type SandboxWatchOptions,
  type WatchFailure,
  type WatchSummary,
  watchSandbox,
} from './sandbox/sandbox-watch.js';
