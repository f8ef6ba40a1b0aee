/** The hypervisor layer: turns NetworkDevice descriptions into QEMU, Cloud Hypervisor and Firecracker terms. */
export * from './cloud-hypervisor.js';
export * from './device.js';
export * from './errors.js';
export * from './firecracker.js';
export * from './kvm-probe.js';
export * from './qemu.js';
export { type QemuMachineType, qemuHotplugPortArguments } from './qemu-hotplug-ports.js';
export * from './qemu-process.js';
export * from './qmp.js';
export * from './qmp-network-hotplug.js';
export * from './rate-limiter.js';
