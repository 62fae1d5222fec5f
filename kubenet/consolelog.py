"""A VM's console log (`<state>/<vm>/serial.log`, written by qemu afresh at each start):
`invoke logs`, whole, from the last boot, or followed as `tail -f` does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import errors

# The first line a Linux kernel prints; a guest that rebooted inside one qemu run logged it once per boot.
BOOT_MARK = b"Linux version "


def since_last_boot(data: bytes) -> int:
    """Where the guest's last boot begins in the log: the line of its kernel's banner (the start if none)."""
    mark = data.rfind(BOOT_MARK)
    return 0 if mark < 0 else data.rfind(b"\n", 0, mark) + 1


def show_log(path: Path, since_boot: bool, follow: bool) -> None:
    """Write the log to stdout as bytes; with `follow`, become `tail -f` from there on."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise errors.KubenetError(f"{path} does not exist: the VM has not been started by `up` or `start`", "start it with `make up`") from None
    start = since_last_boot(data) if since_boot else 0
    if not follow:
        sys.stdout.buffer.write(data[start:])
        sys.stdout.buffer.flush()
        return
    from .process import replace_process

    sys.stdout.flush()
    replace_process(["tail", "-c", f"+{start + 1}", "-f", os.fspath(path)], "tail is part of coreutils")
