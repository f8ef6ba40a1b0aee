# A FUSE mount whose daemon never answers (not even INIT), an O_PATH fd held on its root, and the
# mount lazily detached so /proc/PID/fd/N reads "/" (a stat of it never returns). Run it under
# `unshare -m --propagation private` so no other mount namespace sees the mount.
#   python3 fuse-hold.py MOUNTPOINT SECONDS   (prints "holding fd N" once ready)
import ctypes, os, sys, time

libc = ctypes.CDLL(None, use_errno=True)
mountpoint = sys.argv[1].encode()
fuse = os.open("/dev/fuse", os.O_RDWR)
options = b"fd=%d,rootmode=40000,user_id=0,group_id=0" % fuse
if libc.mount(b"vcnet-test", mountpoint, b"fuse.vcnettest", 0, options) != 0:
    print("mount failed:", os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
fd = os.open(mountpoint, 0o10000000 | os.O_DIRECTORY)  # O_PATH
if libc.umount2(mountpoint, 2) != 0:  # MNT_DETACH
    print("umount failed:", os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
print("holding fd", fd, flush=True)
time.sleep(int(sys.argv[2]))
