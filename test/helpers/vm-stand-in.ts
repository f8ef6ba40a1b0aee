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
