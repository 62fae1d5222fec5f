"""The first program in the pane of a qemu that must start as root (vmnet on macOS,
a bridge whose helper is not setuid), run by root's tmux:

    python -I handover.py USER QMP_SOCKET GUEST_AGENT_SOCKET -- qemu ... -runas USER

It makes the VM's QMP and guest agent sockets as USER, in USER's own 0700 directory,
and hands them to qemu as listening file descriptors; qemu opens its network as root and then runs
as USER (`-runas`, `-run-with user=`). So the user, not root, owns every file and
socket of the VM and the qemu process itself: `ls`, `stop`, `down` and `exec` need
no root. (qemu would make the sockets itself as root, unreachable to the user.)

Standard library only, and run by path with -I: root imports nothing from the
user's environment or working directory.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import socket
import sys

QMP_FD = 3  # where qemu finds the sockets: `-chardev socket,fd=3,server=on`
GUEST_AGENT_FD = 4


def listen_as(user: str, path: str) -> socket.socket:
    """A listening Unix socket at `path`, made with `user`'s rights (so it is theirs, and a
    link planted at `path` is not followed), replacing a stale one of an earlier qemu."""
    account = pwd.getpwnam(user)
    os.setegid(account.pw_gid)
    os.seteuid(account.pw_uid)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        return listener
    finally:
        os.seteuid(0)
        os.setegid(0)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: handover.py USER QMP_SOCKET GUEST_AGENT_SOCKET -- QEMU ARGS...", file=sys.stderr)
        return 2
    user, paths, qemu = argv[0], {QMP_FD: argv[1], GUEST_AGENT_FD: argv[2]}, argv[4:]
    try:
        listeners = {fd: listen_as(user, path) for fd, path in paths.items()}
        # Moved above 3 and 4 first: placing one must not close the other where it is.
        above = {fd: fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for fd, listener in listeners.items()}
        for fd, source in above.items():
            os.dup2(source, fd)  # inheritable, unlike the sockets themselves
        os.execv(qemu[0], qemu)
    except (OSError, KeyError) as error:
        # The pane keeps these words; `up` shows them as the reason the VM did not start.
        print(f"kubenet: cannot start {qemu[0]} for {user} with QMP at {paths[QMP_FD]}: {error}", file=sys.stderr)
        return 1
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
