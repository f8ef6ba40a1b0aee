/**
 * Hot-plug into a q35 machine, where the root complex pcie.0 takes no hot-plugged device: vcnet adds
 * PCIe root ports to the command line and plugs each NIC into a free one (a real QEMU, paused, no
 * guest; the guest side is the e2e test's business). Also the pc variant through a pci-bridge.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  PCI_BRIDGE_NICS,
  type QemuMachineType,
  qemuHotplugPortArguments,
  queryMachineType,
} from '../../../src/hypervisor/qemu-hotplug-ports.js';
import { spawnQemu } from '../../../src/hypervisor/qemu-process.js';
import { hotplugNetworkDevice, QemuNetworkHotplugTarget } from '../../../src/hypervisor/qmp-network-hotplug.js';
import {
  infoNetwork,
  type PausedQemu,
  prepareNamespace,
  qemuIntegrationSkipReason,
  stopPausedQemu,
} from './paused-qemu.js';

const skipReason = qemuIntegrationSkipReason();
if (skipReason) console.log(`skipping q35 hot-plug tests: ${skipReason}`);

describe.skipIf(skipReason !== undefined)('hot-plug through vcnet ports', () => {
  let fixture: PausedQemu | undefined;

  beforeEach(() => {
    fixture = prepareNamespace();
    for (const tap of ['tap1', 'tap2', 'tap3'])
      fixture.namespace.exec('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr']);
  });
  afterEach(async () => {
    await stopPausedQemu(fixture);
    fixture = undefined;
  });

  async function start(machine: QemuMachineType, ports: number) {
    const current = fixture!;
    current.qemu = await spawnQemu({
      networkNamespacePath: current.namespace.path,
      qmpSocketPath: join(current.directory, 'qmp.sock'),
      startPaused: true,
      memoryMiB: 64,
      machine,
      extraArguments: qemuHotplugPortArguments(machine, ports),
    });
    current.qmp = await current.qemu.connectQmp({ timeoutMs: 20_000 });
    return current.qmp;
  }

  const nic = (n: number) => ({ id: `net${n}`, tapName: `tap${n}`, queues: 1, guestMac: `02:42:ac:11:00:0${n}` });

  it('q35: pcie.0 refuses the NIC; vcnet plugs one NIC per root port and reports "<port>/00"', async () => {
    const qmp = await start('q35', 2);
    await expect(hotplugNetworkDevice(qmp, nic(3), { bus: 'pcie.0' })).rejects.toThrow(/hotplug|hot-plug/i);
    const target = new QemuNetworkHotplugTarget(qmp, { machine: 'q35' });
    const first = await target.hotplugNetworkDevice(nic(1));
    const second = await target.hotplugNetworkDevice(nic(2));
    expect(first.pciPath).toMatch(/^[0-9a-f]{2}\/00$/);
    expect(second.pciPath).toMatch(/^[0-9a-f]{2}\/00$/);
    expect(second.pciPath).not.toBe(first.pciPath);
    // Both ports are taken now: a third NIC is refused with what to do.
    // Running out of ports is no bad input (nobody named one): a capacity error with the same hint.
    const full = await target.hotplugNetworkDevice(nic(3)).catch((error: Error & { hint?: string }) => error);
    expect(full).toMatchObject({ code: 'VCNET_HOTPLUG_NO_SLOT', name: 'HotplugCapacityError' });
    expect((full as Error).message).toContain(
      "q35 machine: hot-plug ports found: vcnet's vcnet-rp0, vcnet-rp1 all taken",
    );
    // The hint names the ports the VM does not have yet, not vcnet-rp0 or vcnet-rp1 again.
    expect((full as { hint?: string }).hint).toContain(
      '-device pcie-root-port,id=vcnet-rp2,bus=pcie.0,chassis=34,slot=3',
    );
    // The root ports sit at slots 1 and 2 of pcie.0; each NIC at slot 0 behind its port.
    expect([first.pciPath, second.pciPath]).toEqual(['01/00', '02/00']);
  });

  it('q35 built as Kata builds it (pci-bridge-0, rp0): refused naming the ports found and why they are not used', async () => {
    const current = fixture!;
    current.qemu = await spawnQemu({
      networkNamespacePath: current.namespace.path,
      qmpSocketPath: join(current.directory, 'qmp.sock'),
      startPaused: true,
      memoryMiB: 64,
      machine: 'q35',
      extraArguments: [
        ...['-device', 'pci-bridge,bus=pcie.0,id=pci-bridge-0,chassis_nr=1,shpc=off,addr=2'],
        ...['-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=0,slot=0,multifunction=off,addr=3'],
      ],
    });
    const qmp = await current.qemu.connectQmp({ timeoutMs: 20_000 });
    current.qmp = qmp;
    const refused = await new QemuNetworkHotplugTarget(qmp).hotplugNetworkDevice(nic(1)).then(
      () => undefined,
      (error: Error & { hint?: string }) => error,
    );
    expect(refused?.message).toContain(
      "q35 machine: hot-plug ports found: none of vcnet's; not vcnet's, so left to whoever put them there (Kata's runtime plugs into its own): pci-bridge-0 (slot 0x02), rp0 (slot 0x03)",
    );
    expect(refused?.message).not.toContain('"q35"');
    expect(refused?.hint).toContain('-device pcie-root-port,id=vcnet-rp0,bus=pcie.0,chassis=32,slot=1');
    expect(refused?.hint).toContain('docs/compatibility.md');
  });

  it('told nothing, the target asks QEMU its machine type: q35 into a root port, pc onto pci.0', async () => {
    const q35 = await start('q35', 1);
    expect(await queryMachineType(q35)).toBe('q35');
    await expect(new QemuNetworkHotplugTarget(q35).hotplugNetworkDevice(nic(1))).resolves.toMatchObject({
      pciPath: '01/00',
    });
    await stopPausedQemu(fixture);
    fixture = prepareNamespace();
    fixture.namespace.exec('ip', ['tuntap', 'add', 'dev', 'tap1', 'mode', 'tap', 'vnet_hdr']);
    const pc = await start('pc', 1);
    expect(await queryMachineType(pc)).toBe('pc');
    // -nodefaults: host bridge and PIIX3 in slots 0 and 1, vcnet's bridge in 2; the NIC in 3 of pci.0.
    await expect(new QemuNetworkHotplugTarget(pc).hotplugNetworkDevice(nic(1))).resolves.toMatchObject({
      pciPath: '03',
    });
  });

  it('pc: NICs go onto the vcnet pci-bridge', async () => {
    const qmp = await start('pc', 1);
    const target = new QemuNetworkHotplugTarget(qmp, { machine: 'pc' });
    const plugged = await target.hotplugNetworkDevice(nic(1));
    expect(plugged.pciPath).toMatch(/^[0-9a-f]{2}\/[0-9a-f]{2}$/);
  });

  it("pc, told nothing: NICs onto pci.0, into vcnet's bridge once pci.0 is full, then a capacity error naming the bridge to add", async () => {
    const count = 29 + PCI_BRIDGE_NICS + 1;
    fixture!.namespace.exec('sh', [
      '-c',
      `for n in $(seq 10 ${10 + count}); do ip tuntap add dev tap$n mode tap vnet_hdr; done`,
    ]);
    const qmp = await start('pc', 1);
    const target = new QemuNetworkHotplugTarget(qmp);
    const paths: string[] = [];
    let refused: (Error & { code?: string; hint?: string }) | undefined;
    for (let n = 10; n < 10 + count && !refused; n++) {
      const device = {
        id: `net${n}`,
        tapName: `tap${n}`,
        queues: 1,
        guestMac: `02:42:ac:11:01:${n.toString(16).padStart(2, '0')}`,
      };
      await target.hotplugNetworkDevice(device).then(
        (plugged) => paths.push(plugged.pciPath ?? '?'),
        (error: Error) => {
          refused = error;
        },
      );
    }
    // -nodefaults: host bridge, PIIX3 and vcnet-bridge0 in slots 0-2 of pci.0, NICs in 3-31; then the bridge.
    const onRootBus = paths.filter((path) => !path.includes('/'));
    const behindBridge = paths.filter((path) => path.startsWith('02/'));
    expect(onRootBus, refused?.message).toHaveLength(29);
    expect(onRootBus.at(-1)).toBe('1f');
    expect(behindBridge).toHaveLength(PCI_BRIDGE_NICS);
    expect(paths).toHaveLength(29 + PCI_BRIDGE_NICS);
    expect(refused).toMatchObject({ code: 'VCNET_HOTPLUG_NO_SLOT' });
    expect(refused?.message).toContain(
      "pc machine: root bus pci.0 full; hot-plug ports found: vcnet's vcnet-bridge0 all taken",
    );
    expect(refused?.hint).toContain('-device pci-bridge,id=vcnet-bridge1,bus=pci.0,chassis_nr=33');
    // The refused NIC left nothing in the VM: no netdev of it.
    expect(await infoNetwork(qmp)).not.toContain(`netdev-net${9 + count}`);
  });
});
