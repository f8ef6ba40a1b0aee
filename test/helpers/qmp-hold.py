# A QMP relay in front of a real QEMU that holds one command: every byte (and the fds of getfd, sent
# with SCM_RIGHTS, which Node's sockets cannot pass on) goes through to QEMU until a client sends
# COMMAND; that message is kept back (QEMU never sees it, the client never gets an answer), and the
# relay prints "held COMMAND". The test then kills QEMU; the relay's connections and listener go
# with it (see the end), so the socket refuses connections as a dead QEMU's does. COMMAND "-" holds
# nothing (a plain relay). Each connection taken prints "accepted": a test sees when a client has
# connected, before QEMU greets it (QEMU greets one client at a time).
# COMMAND "+take" relays all, prints "N> COMMAND" for each command client N (from 1) sends, and once
# client 1 has gone takes QEMU's QMP itself, as another client (a runtime) taking it at that moment
# would: it prints "taken" once QEMU greets it and holds it until a line comes on stdin ("released").
# The clients after the first reach QEMU only once it is taken: QEMU serves them after it.
#   python3 qmp-hold.py LISTEN_PATH QEMU_QMP_PATH COMMAND QEMU_PID
import array, os, re, select, socket, sys, threading

listen_path, qemu_path, command, qemu_pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
needle = ('"execute":"%s"' % command).encode()
held = threading.Event()
take = command == "+take"
taken = threading.Event()
executed = re.compile(rb'"execute"\s*:\s*"([^"]+)"')


def say(line):
    # One write: the test reads the lines from a pipe, in whatever chunks they come.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def take_qmp():
    holder = socket.socket(socket.AF_UNIX)
    holder.connect(qemu_path)
    greeting = b""
    while b"\n" not in greeting:
        chunk = holder.recv(4096)
        if not chunk:
            break
        greeting += chunk
    say("taken")
    taken.set()
    sys.stdin.readline()
    holder.close()
    say("released")


def relay(client, number):
    if take and number > 1:
        taken.wait()
    upstream = socket.socket(socket.AF_UNIX)
    upstream.connect(qemu_path)
    while True:
        readable, _, _ = select.select([client, upstream], [], [])
        for source in readable:
            target = upstream if source is client else client
            fds = array.array("i")
            try:
                data, ancillary, _, _ = source.recvmsg(65536, socket.CMSG_SPACE(16 * fds.itemsize))
            except OSError:
                data, ancillary = b"", []
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if not data:
                client.close()
                upstream.close()
                if take and number == 1:
                    take_qmp()
                return
            if take and source is client:
                for name in executed.findall(data):
                    say("%d> %s" % (number, name.decode()))
            if source is client and command not in ("-", "+take") and not held.is_set() and needle in data.replace(b" ", b""):
                held.set()
                # One write: the test reads the line from a pipe, in whatever chunks it comes.
                sys.stdout.write("held %s\n" % command)
                sys.stdout.flush()
                continue
            try:
                target.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)] if len(fds) else [])
            finally:
                for fd in fds:
                    os.close(fd)


def exit_with_qemu():
    # QEMU's end is the relay's: a pidfd is not in Debian 12's python3 3.11 os module for non-children,
    # so /proc is polled. Exiting closes every connection and the listener (its file stays, refusing).
    while os.path.exists("/proc/%d" % qemu_pid):
        threading.Event().wait(0.05)
    os._exit(0)


try:
    os.unlink(listen_path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX)
server.bind(listen_path)
server.listen(8)
threading.Thread(target=exit_with_qemu, daemon=True).start()
sys.stdout.write("listening\n")
sys.stdout.flush()
accepted = 0
while True:
    connection, _ = server.accept()
    accepted += 1
    say("accepted")
    threading.Thread(target=relay, args=(connection, accepted), daemon=True).start()
