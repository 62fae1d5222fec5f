"""What a user's `qemu_args` may not do, decided by what qemu would do with them *:
redefine what kubenet sets (the machine, memory, NICs, console, QMP, its drives);
open a monitor, a QMP or a gdb server, through which whoever reaches it runs
commands in qemu as the user; listen on anything but loopback (VNC, SPICE, a
chardev or migration server); throw the VM's writes away (`-snapshot`); or reach
the files kubenet gives qemu (a VM's disk, seed and UEFI variables, the base image),
through a symlink too.

qemu takes an option with one dash or two, and its value as the next argument; both
spellings, and `-option=value`, are read alike here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

OWNED_HINT = "set it through cluster.yaml's own key, or leave it to kubenet"

# What kubenet sets on every qemu command line: an extra argument may add devices or
# tune qemu, but not redefine these (qemu would take the last, or refuse the pair).
OWNED_OPTIONS = {
    "-machine": "the machine (and accelerator)", "-M": "the machine (and accelerator)",
    "-accel": "the accelerator (use --accel or accel:, and tcg_tb_size:)",
    "-enable-kvm": "the accelerator (use --accel or accel:, and tcg_tb_size:)",
    "-m": "the VM's memory (role memory:)", "-smp": "the VM's vCPUs (role vcpus:)",
    "-nic": "the NIC (network:)", "-net": "the NIC (network:)", "-netdev": "the NIC (network:)",
    "-pidfile": "the pid file",
    "-serial": "the serial console", "-nographic": "the console", "-daemonize": "where qemu runs (its tmux pane)",
    "-kernel": "the boot (image:)", "-initrd": "the boot (image:)", "-append": "the boot (image:)", "-bios": "the firmware",
    "-runas": "the user qemu runs as", "-run-with": "the user qemu runs as",
    "-hda": "the disk slots (kubenet's disk is one; add a disk with -drive file=PATH,if=virtio)",
    "-hdb": "the disk slots (kubenet's disk is one; add a disk with -drive file=PATH,if=virtio)",
    "-hdc": "the disk slots (kubenet's disk is one; add a disk with -drive file=PATH,if=virtio)",
    "-hdd": "the disk slots (kubenet's disk is one; add a disk with -drive file=PATH,if=virtio)",
    "-set": "options of kubenet's own devices", "-readconfig": "options kubenet cannot see (a file of them)",
}  # fmt: skip
MONITORS = ("-monitor", "-qmp", "-qmp-pretty", "-mon", "-gdb", "-s")
MONITOR_HINT = "kubenet's own QMP socket (<state_dir>/<vm>/qmp.sock) is yours alone: use that"
LISTEN_HINT = "bind it to 127.0.0.1 (e.g. -vnc 127.0.0.1:0), or use a unix socket"
OWN_FILES = ("disk.img", "cidata.iso", "efivars.qcow2", "efivars.fd")
OWN_CHARDEVS = ("console", "qmp", "guest-agent")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]", "ip6-localhost"}
# options whose value is a character device spec (`tcp:HOST:PORT,server=on`, `unix:PATH`, ...)
CHARDEV_SPECS = ("-parallel", "-debugcon", "-virtioconsole")


@dataclass(frozen=True)
class Refusal:
    option: str  # as the user wrote it
    why: str
    hint: str


def spelled(arg: str) -> tuple[str, str | None]:
    """('-option', attached value or None) for an option written `-opt`, `--opt` or `-opt=value`;
    ('', None) for what is not an option."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return "", None
    name, equals, value = arg.partition("=")
    name = name[1:] if name.startswith("--") else name
    return name, (value if equals else None)


def options(args: tuple[str, ...] | list[str]) -> list[tuple[str, str, str]]:
    """Each option with the value qemu would give it: (as written, '-option', value or '')."""
    found = []
    for index, arg in enumerate(args):
        name, attached = spelled(arg)
        if name:
            following = args[index + 1] if index + 1 < len(args) else ""
            found.append((arg, name, attached if attached is not None else following))
    return found


def opts(value: str) -> tuple[str, dict[str, str]]:
    """qemu's `first,key=value,...` (',,' a comma): the first part and the keys (a bare key is 'on')."""
    parts = [part.replace("\0", ",") for part in value.replace(",,", "\0").split(",")]
    keys = {}
    for part in parts if "=" in parts[0] else parts[1:]:  # `file=x,...`: the first part is a key too
        key, equals, item = part.partition("=")
        keys[key] = item if equals else "on"
    return parts[0], keys


def loopback(host: str) -> bool:
    return host.strip("[]") in {address.strip("[]") for address in LOOPBACK}


def listens_beyond_loopback(option: str, value: str) -> str | None:
    """The address an option listens on, when it is not loopback: '' for all addresses."""
    first, keys = opts(value)
    if option == "-chardev":
        if first not in ("socket", "tcp", "telnet", "websocket") or keys.get("server", "off") in ("off", "false", "no"):
            return None
        if "path" in keys or "fd" in keys:
            return None  # a unix socket, or one handed over
        host = keys.get("host", "")
        return None if loopback(host) else host
    if option in CHARDEV_SPECS or option == "-incoming":
        backend, _, rest = first.partition(":")
        if backend not in ("tcp", "telnet", "websocket") or (option != "-incoming" and keys.get("server", "off") in ("off", "false", "no")):
            return None
        host = rest.rpartition(":")[0]
        return None if loopback(host) else host
    if option in ("-vnc", "-display"):
        if option == "-display" and not first.startswith("vnc="):
            return None  # gtk, sdl, curses, none: nothing listens
        display = first[len("vnc="):] if option == "-display" else first
        if display in ("none", "") or display.startswith(("unix:", "to=")):
            return None
        host = display.rpartition(":")[0]
        if not loopback(host):
            return host
        websocket = keys.get("websocket", "off")
        if websocket not in ("off", "false", "no"):
            socket_host = websocket.rpartition(":")[0] if ":" in websocket else ""  # a bare port: every address
            return None if loopback(socket_host) else socket_host
        return None
    if option == "-spice":
        if "unix" in keys or ("port" not in keys and "tls-port" not in keys):
            return None
        host = keys.get("addr", "")
        return None if loopback(host) else host
    return None


def refusal(args: tuple[str, ...] | list[str]) -> Refusal | None:
    """The first thing in `args` that kubenet refuses, and why; None when it takes them all."""
    for written, option, value in options(args):
        if option in MONITORS:
            return Refusal(written, "opens a monitor (HMP, QMP or gdb), through which whoever reaches it runs commands in qemu as you", MONITOR_HINT)
        if option in OWNED_OPTIONS:
            return Refusal(written, f"redefines {OWNED_OPTIONS[option]}, which kubenet sets", OWNED_HINT)
        if option == "-snapshot":
            return Refusal(written, "throws away every write to the VM's disk when qemu exits", "take a snapshot with `invoke snapshot save NAME` instead")
        if option in ("-drive", "-blockdev") and ("if=pflash" in value or any(name in value for name in OWN_FILES)):
            return Refusal(written, "redefines the disk, seed and UEFI drives, which kubenet sets", OWNED_HINT)
        if option == "-device" and value.startswith("virtio-balloon"):
            return Refusal(written, "redefines the memory balloon (qemu takes one), which kubenet sets", OWNED_HINT)
        if option == "-chardev" and opts(value)[1].get("id") in OWN_CHARDEVS:
            return Refusal(written, "redefines the console, QMP and guest agent character devices, which kubenet sets", OWNED_HINT)
        address = listens_beyond_loopback(option, value)
        if address is not None:
            where = "every address of this machine" if address in ("", "0", "0.0.0.0", "::", "[::]") else address
            return Refusal(written, f"listens on {where}, beyond loopback: anyone who reaches it takes over the VM's console or screen", LISTEN_HINT)
    return None


# ---- the files kubenet gives qemu ---------------------------------------------------------


def drive_files(option: str, value: str) -> list[str]:
    """The file names a -drive or -blockdev names: its file=/filename= keys, JSON too."""
    if value.startswith("{"):
        try:
            return [str(found) for found in _json_values(json.loads(value), ("filename", "file"))]
        except ValueError:
            return []
    _, keys = opts(value)
    names = [item for key, item in keys.items() if key == "file" or key.endswith(".filename") or key == "filename"]
    return [name for name in names if name and not name.startswith("json:")] + [
        str(found) for name in names if name.startswith("json:") for found in _json_values(_json_or_empty(name[5:]), ("filename", "file"))
    ]


def _json_or_empty(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _json_values(data, keys: tuple[str, ...]) -> list:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key in keys and isinstance(value, str):
                found.append(value)
            found += _json_values(value, keys)
    elif isinstance(data, list):
        for item in data:
            found += _json_values(item, keys)
    return found


def reaching(args: tuple[str, ...] | list[str], protected: list[Path], bases: list[Path]) -> tuple[str, str] | None:
    """(the option as written, the file) of the first drive that names one of kubenet's files:
    a path in (or equal to) one of `protected`, symlinks resolved, a relative path read from
    each of `bases` (qemu's working directory is not known here)."""
    for written, option, value in options(args):
        if option not in ("-drive", "-blockdev", "-cdrom", "-fda", "-fdb", "-sd", "-mtdblock", "-pflash"):
            continue
        names = drive_files(option, value) if option in ("-drive", "-blockdev") else [value]
        for name in names:
            for base in bases:
                resolved = Path(os.path.realpath(os.path.join(base, os.path.expanduser(name))))
                if any(resolved == place or place in resolved.parents for place in protected):
                    return written, name
    return None

