"""A VM's console log (`<state>/<vm>/serial.log`, written by qemu afresh at each start):
`invoke logs`, whole, from the last boot, or followed as `tail -f` does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..plumbing import errors

# The first line a Linux kernel prints; a guest that rebooted inside one qemu run logged it once per boot.
BOOT_MARK = b"Linux version "


def since_last_boot(data: bytes) -> int:
    """Where the guest's last boot begins in the log: the line of its kernel's banner (the start if none)."""
    mark = data.rfind(BOOT_MARK)
    return 0 if mark < 0 else data.rfind(b"\n", 0, mark) + 1


def open_log(path: Path, name: str) -> int:
    """The log, opened without following a link: one in its place is not kubenet's (it would
    show whatever it points to), nor is anything but a regular file."""
    import errno
    import stat

    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise errors.KubenetError(f"{path} does not exist: the VM has not been started by `up` or `start`", "start it with `make up`") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise errors.KubenetError(f"{path} is a link, not the console log kubenet writes; nothing shown", f"remove it: the next start of {name} writes the log afresh") from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise errors.KubenetError(f"{path} is not a regular file, not the console log kubenet writes; nothing shown", f"remove it: the next start of {name} writes the log afresh")
    return descriptor


def show_log(path: Path, name: str, since_boot: bool, follow: bool) -> None:
    """Write the log to stdout as bytes; with `follow`, become `tail -f` from there on."""
    descriptor = open_log(path, name)
    with os.fdopen(descriptor, "rb", closefd=not follow) as stream:
        data = stream.read()
    start = since_last_boot(data) if since_boot else 0
    if not follow:
        sys.stdout.buffer.write(data[start:])
        sys.stdout.buffer.flush()
        return
    from ..plumbing.process import replace_process

    sys.stdout.flush()
    os.dup2(descriptor, 0)  # tail follows the file opened here, never a name a link could take over
    os.close(descriptor)
    replace_process(["tail", "-c", f"+{start + 1}", "-f", "/dev/fd/0"], "tail is part of coreutils")
