"""The first program in the pane of a qemu that must start as root (vmnet on macOS,
a bridge whose helper is not setuid), run by root's tmux:

    python -I handover.py USER QMP_SOCKET -- qemu ... -runas USER

It makes the VM's QMP socket as USER, in USER's own 0700 directory, and hands it to
qemu as a listening file descriptor; qemu opens its network as root and then runs
as USER (`-runas`, `-run-with user=`). So the user, not root, owns every file and
socket of the VM and the qemu process itself: `ls`, `stop`, `down` and `exec` need
no root. (qemu would make the socket itself as root, unreachable to the user.)

Standard library only, and run by path with -I: root imports nothing from the
user's environment or working directory.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys

QMP_FD = 3  # where qemu finds the socket: `-chardev socket,fd=3,server=on`


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
    if len(argv) < 4 or argv[2] != "--":
        print("usage: handover.py USER QMP_SOCKET -- QEMU ARGS...", file=sys.stderr)
        return 2
    user, path, qemu = argv[0], argv[1], argv[3:]
    try:
        listener = listen_as(user, path)
        if listener.fileno() != QMP_FD:
            os.dup2(listener.fileno(), QMP_FD)
        os.set_inheritable(QMP_FD, True)  # (dup2 onto itself would leave it close-on-exec)
        os.execv(qemu[0], qemu)
    except (OSError, KeyError) as error:
        # The pane keeps these words; `up` shows them as the reason the VM did not start.
        print(f"kubenet: cannot start {qemu[0]} for {user} with QMP at {path}: {error}", file=sys.stderr)
        return 1
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
