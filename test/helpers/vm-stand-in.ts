/**
 * A VM stand-in: a process in a pod namespace that holds one of vcnet's devices open as a VMM does
 * (a tap with a queue attached by TUNSETIFF, a macvtap's /dev/tapN open) until it is killed. No VM is
 * needed: the kernel (a tap's carrier) and /proc/PID/fd show a process holding the fd the same way.
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE: attaches one queue, as QEMU does per queue. */
const attachQueue = (tap: string) =>
  `import fcntl,os,struct,time;fd=os.open("/dev/net/tun",os.O_RDWR);fcntl.ioctl(fd,0x400454ca,struct.pack("16sH",${JSON.stringify(tap)}.encode(),0x5002));print("held",flush=True);time.sleep(120)`;

/** Resolves once the child printed `held`; rejects when it exits before. */
function held(child: ChildProcess): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (data: Buffer) => {
      stderr += String(data);
    });
    child.stdout?.on('data', (data: Buffer) => {
      if (String(data).includes('held')) resolve(child);
    });
    child.on('exit', (code) =>
      reject(new Error(`the VM stand-in exited ${code} before it held the device: ${stderr}`)),
    );
  });
}

/** A process in the namespace with a queue of `tap` attached. */
export function holdTapQueue(namespacePath: string, tap: string): Promise<ChildProcess> {
  return held(spawn('nsenter', [`--net=${namespacePath}`, '/usr/bin/python3', '-c', attachQueue(tap)]));
}

/** A process in the namespace with `devicePath` (a macvtap's /dev/tapN) open for reading and writing. */
export function holdDeviceFile(namespacePath: string, devicePath: string): Promise<ChildProcess> {
  return held(
    spawn('nsenter', [`--net=${namespacePath}`, 'sh', '-c', `exec 3<>${devicePath}; echo held; exec sleep 120`]),
  );
}

/**
 * The python that copies frames both ways between a VM's device (`openPod`: a statement that sets
 * `pod` to its fd, read and written with a virtio-net header of 10 bytes, as QEMU does) and a tap of
 * its own, `guestTap`, made in `guestPath`. setns by ctypes: Debian 12's python3 (3.11) has no os.setns.
 */
function relayScript(openPod: string, guestPath: string, guestTap: string): string {
  return [
    'import ctypes,fcntl,os,select,struct',
    'libc=ctypes.CDLL(None,use_errno=True)',
    'def enter(path):',
    ' fd=os.open(path,os.O_RDONLY)',
    ' if libc.setns(fd,0x40000000)!=0: raise OSError(ctypes.get_errno(),"setns "+path)',
    ' os.close(fd)',
    'def tap(name,flags):',
    ' fd=os.open("/dev/net/tun",os.O_RDWR)',
    ' fcntl.ioctl(fd,0x400454ca,struct.pack("16sH",name.encode(),flags))',
    ' return fd',
    openPod,
    `enter(${JSON.stringify(guestPath)});guest=tap(${JSON.stringify(guestTap)},0x1002)`,
    'print("held",flush=True)',
    // The virtio-net header (10 bytes, no offloads asked) comes before each frame on the VM's device.
    'HEADER=10',
    'while True:',
    ' for fd in select.select([pod,guest],[],[])[0]:',
    '  frame=os.read(fd,65536)',
    '  try: os.write(guest,frame[HEADER:]) if fd==pod else os.write(pod,bytes(HEADER)+frame)',
    // A guest tap not up yet refuses frames (EIO): dropped, as a NIC that is down drops them.
    '  except OSError: pass',
  ].join('\n');
}

/**
 * A VMM and guest NIC in one: attaches a queue of vcnet's `tap` in `podPath` (with the virtio-net
 * header, as QEMU does) and copies frames both ways to a tap of its own, `guestTap`, made in
 * `guestPath`, where that namespace's kernel receives them as a guest's NIC would: it answers only
 * what is sent to its own MAC (the caller gives it the guest MAC, an address, and sets it up once
 * this resolves). The guest tap goes when the process is killed.
 */
export function relayTapToGuest(
  podPath: string,
  tap: string,
  guestPath: string,
  guestTap: string,
): Promise<ChildProcess> {
  // IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR: a queue of vcnet's tap, as QEMU attaches one.
  const openPod = `enter(${JSON.stringify(podPath)});pod=tap(${JSON.stringify(tap)},0x5002|0x4000)`;
  return held(spawn('/usr/bin/python3', ['-c', relayScript(openPod, guestPath, guestTap)]));
}

/**
 * relayTapToGuest for a macvtap: opens its device file (`devicePath`, the record's tapDevicePath, as
 * QEMU is given it by fd), which carries the virtio-net header from the open on (IFF_VNET_HDR is a
 * macvtap queue's default).
 */
export function relayMacvtapToGuest(devicePath: string, guestPath: string, guestTap: string): Promise<ChildProcess> {
  const openPod = `pod=os.open(${JSON.stringify(devicePath)},os.O_RDWR)`;
  return held(spawn('/usr/bin/python3', ['-c', relayScript(openPod, guestPath, guestTap)]));
}
