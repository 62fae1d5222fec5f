"""The marks a guest prints on its serial console at each boot, and reading them back.

kubenet's seed gives every VM a `bootcmd` (cloud-init runs it early, at every boot)
that starts a small watcher in the guest. It prints, on the serial console:

    kubenet-mark <boot id> boot                 at once
    kubenet-mark <boot id> ssh                  when sshd listens on port 22
    kubenet-mark <boot id> cloud-init <status>  when cloud-init has finished (done, or error;
                                                `absent` without cloud-init)

It learns that sshd listens from the kernel's socket table (/proc/net/tcp), never by
connecting, and that cloud-init has finished from the file it writes then; a look a
second, in the shell, is all it costs the guest. qemu already writes the console to `<vm>/serial.log`, so the host learns
where a boot stands by reading a file: nothing knocks on the guest's sshd before it
listens, however slow the guest. The boot id tells this boot's marks from those of an
earlier boot in the same qemu's log (a guest that rebooted).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MARK = "kubenet-mark"
# The serial consoles of the machines kubenet runs: q35's first UART, then virt's PL011.
CONSOLES = ("/dev/ttyS0", "/dev/ttyAMA0")
# cloud-init writes it when its last stage has run, with the errors it met (`"errors": []`
# when none): looked for once a second, where `cloud-init status --wait` would start Python.
RESULT = "/run/cloud-init/result.json"
# sshd listening on port 22 (0x16), over IPv4 or IPv6: state 0A is LISTEN.
LISTENING_22 = r"^ *[0-9]+: [0-9A-F]+:0016 [0-9A-F]+:[0-9A-F]+ 0A "

# POSIX sh, as busybox runs it too. Backgrounded with its output closed, so cloud-init
# goes on at once; deaf to the hangup its parent's session may end with; it ends once
# cloud-init has finished.
WATCHER = f"""\
(
trap '' HUP
boot=$(cat /proc/sys/kernel/random/boot_id)
mark() {{
  for console in {' '.join(CONSOLES)}; do
    [ -c "$console" ] && printf '\\r\\n{MARK} %s %s\\r\\n' "$boot" "$*" 2>/dev/null >"$console" && return
  done
}}
mark boot
until grep -qE '{LISTENING_22}' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do sleep 1; done
mark ssh
if command -v cloud-init >/dev/null 2>&1; then
  until [ -e {RESULT} ]; do sleep 1; done
  if grep -q '"errors": \\[\\]' {RESULT}; then mark cloud-init done; else mark cloud-init error; fi
else
  mark cloud-init absent
fi
) </dev/null >/dev/null 2>&1 &
"""

LINE = re.compile(rf"{MARK} ([0-9a-f-]{{8,64}}) (boot|ssh|cloud-init)(?: ([a-z-]+))?[ \r]*$", re.MULTILINE)
# The first line a Linux kernel prints at each boot: what came before it is another boot's.
NEW_KERNEL = re.compile(r"Linux version [0-9]")
MARK_OR_KERNEL = re.compile(f"{LINE.pattern}|{NEW_KERNEL.pattern}", re.MULTILINE)  # in the order they came


@dataclass(frozen=True)
class Marks:
    """What the console says of the guest's latest boot."""

    boot: str | None = None  # the boot id; None: no mark at all (an image without kubenet's bootcmd)
    ssh: bool = False  # sshd listens
    cloud_init: str | None = None  # how cloud-init ended: done, error, disabled, absent; None: not yet

    @property
    def sshd_up(self) -> bool:
        return self.ssh or self.cloud_init is not None  # the watcher marks ssh before cloud-init


def parse(text: str, marks: Marks = Marks()) -> Marks:
    """The marks after reading `text` (the console's next lines), given those read before.
    A kernel's banner, or a mark of another boot id, starts a new boot: the guest rebooted,
    and until its own marks come nothing is known of it."""
    for found in MARK_OR_KERNEL.finditer(text):
        boot, what, detail = found.groups()
        if boot is None:
            marks = Marks()
            continue
        if boot != marks.boot:
            marks = Marks(boot=boot)
        if what == "ssh":
            marks = Marks(boot, True, marks.cloud_init)
        elif what == "cloud-init":
            marks = Marks(boot, marks.ssh, detail or "unknown")
    return marks


class ConsoleMarks:
    """Reads a console log as it grows, keeping the marks of the latest boot. Each `read`
    takes only the bytes written since the last one; a log started afresh (a new qemu)
    is read from its beginning."""

    def __init__(self, log: Path, offset: int = 0):
        self.log = log
        self.offset = offset  # where reading starts: 0, or where an earlier reader stopped
        self.partial = b""  # a line not yet ended: its mark may still be coming
        self.marks = Marks()
        self.kernel_seen = False  # whether a kernel's banner came: the guest boots, and its console is here

    def read(self) -> Marks:
        try:
            # never through a link: the log is kubenet's own file in the VM's directory
            descriptor = os.open(self.log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return self.marks
        with os.fdopen(descriptor, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size < self.offset:  # written afresh (a new qemu): from its beginning
                self.offset, self.partial, self.marks, self.kernel_seen = 0, b"", Marks(), False
            stream.seek(self.offset)
            data = stream.read(size - self.offset)
        self.offset += len(data)
        data = self.partial + data
        complete, _, self.partial = data.rpartition(b"\n")
        self.partial = self.partial[-512:]
        text = complete.decode("ascii", errors="replace")
        self.kernel_seen = self.kernel_seen or NEW_KERNEL.search(text) is not None
        self.marks = parse(text, self.marks)
        return self.marks



def rebooted_since(log: Path, offset: int, boot: str) -> bool:
    """Whether the console log shows another boot after `offset` bytes: the kernel's banner
    again, or, for a guest proved in a boot whose marks were known (`boot`), marks of
    another. (A guest proved before its marks arrived, the console being slow, has `boot`
    '': its own boot's marks may come later and say nothing of a reboot.)"""
    try:
        descriptor = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(descriptor, "rb") as stream:
        stream.seek(offset)
        later = stream.read().decode("ascii", errors="replace")
    if NEW_KERNEL.search(later):
        return True
    marks = parse(later)
    return bool(boot) and marks.boot is not None and marks.boot != boot
