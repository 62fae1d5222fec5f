"""What kind of machine runs the VMs: OS, CPU architecture, accelerator, qemu, firmware.

`probe_host` looks at the real machine once per command; `host_profile` describes
another kind of machine for dry runs (`invoke argv --host darwin-arm64`).
Per-architecture choices live on the Arch enum so the rest of the code never
branches on architecture names.
"""

from __future__ import annotations

import enum
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from . import errors
from .cluster import ACCELERATORS
from .firmware import Firmware, find_firmware

ACCEL_ENV = "KUBENET_ACCEL"
QEMU_ENV = "KUBENET_QEMU"


class Arch(enum.Enum):
    x86_64 = "x86_64"
    aarch64 = "aarch64"

    @classmethod
    def from_machine(cls, machine: str) -> "Arch":
        aliases = {"x86_64": cls.x86_64, "amd64": cls.x86_64, "arm64": cls.aarch64, "aarch64": cls.aarch64}
        if machine.lower() not in aliases:
            raise errors.HostError(f"unsupported CPU architecture {machine!r}", "kubenet runs on x86_64 and arm64")
        return aliases[machine.lower()]

    def qemu_binary(self) -> str:
        return f"qemu-system-{self.value}"

    def machine_type(self) -> str:
        return {Arch.x86_64: "q35", Arch.aarch64: "virt"}[self]

    def machine_options(self) -> tuple[str, ...]:
        # highmem lets an aarch64 guest have RAM above 4G (the tutorial's choice)
        return {Arch.x86_64: (), Arch.aarch64: ("highmem=on",)}[self]

    def machine_family(self) -> str:
        """How firmware descriptors name this machine type's versions (pc-q35-8.0, virt-8.0)."""
        return {Arch.x86_64: "pc-q35", Arch.aarch64: "virt"}[self]

    def image_arch(self) -> str:
        """Ubuntu's name for the architecture in cloud image file names."""
        return {Arch.x86_64: "amd64", Arch.aarch64: "arm64"}[self]

    def serial_console(self) -> str:
        return {Arch.x86_64: "ttyS0", Arch.aarch64: "ttyAMA0"}[self]

    def firmware_options(self, firmware: Firmware, efivars: Path) -> list[str]:
        if self is Arch.aarch64:
            # The tutorial's way; edk2 for virt runs from a read-only -bios image.
            return ["-bios", str(firmware.code)]
        # OVMF is split in code and a per-VM variable store, both as pflash.
        return [
            "-drive", f"if=pflash,format=raw,unit=0,file={firmware.code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={efivars}",
        ]  # fmt: skip

    def disk_options(self, disk: Path) -> list[str]:
        if self is Arch.aarch64:
            return ["-hda", str(disk)]  # virt attaches -hda as virtio, as in the tutorial
        return ["-drive", f"file={disk},if=virtio,format=qcow2"]  # -hda would be slow IDE on q35


@dataclass(frozen=True)
class Host:
    system: str  # "darwin" or "linux"
    arch: Arch
    accel: str  # the best accelerator this machine offers
    qemu: str  # path or name of qemu-system-<arch>
    qemu_found: bool = True
    firmware: Firmware | None = None
    # Names of existing network bridges; None when unknown (a described host).
    bridges: frozenset[str] | None = None
    is_root: bool = False
    # Why no firmware was found; raised only when a cloud image needs it.
    firmware_error: str | None = None


# Hosts that `--host` can describe, with the firmware paths their packages install.
PROFILES = {
    "darwin-arm64": ("darwin", Arch.aarch64, "hvf", Firmware(Path("/opt/homebrew/share/qemu/edk2-aarch64-code.fd"))),
    "linux-x86_64": (
        "linux",
        Arch.x86_64,
        "kvm",
        Firmware(Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    ),
    "linux-aarch64": (
        "linux",
        Arch.aarch64,
        "kvm",
        Firmware(Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
    ),
}
PROFILE_ALIASES = {"darwin-aarch64": "darwin-arm64", "linux-amd64": "linux-x86_64", "linux-arm64": "linux-aarch64"}


def host_profile(name: str) -> Host:
    key = PROFILE_ALIASES.get(name, name)
    if key not in PROFILES:
        raise errors.HostError(
            f"unknown host kind {name!r}; allowed: {', '.join(PROFILES)}", "leave out --host for this machine"
        )
    system, arch, accel, firmware = PROFILES[key]
    return Host(system=system, arch=arch, accel=accel, qemu=arch.qemu_binary(), firmware=firmware)


def choose_accel(host: Host, configured: str | None, environ: Mapping[str, str], option: str | None = None) -> str:
    """--accel beats $KUBENET_ACCEL, which beats cluster.yaml's accel, which beats what the probe found."""
    sources = (
        ("--accel", option, "leave out --accel to let kubenet choose"),
        (ACCEL_ENV, environ.get(ACCEL_ENV), f"unset {ACCEL_ENV} to let kubenet choose"),
        ("accel", configured, "remove accel from cluster.yaml to let kubenet choose"),
    )
    for source, value, hint in sources:
        if value:
            if value not in ACCELERATORS:
                raise errors.HostError(f"{source} {value!r} is not an accelerator; allowed: {', '.join(ACCELERATORS)}", hint)
            return value
    return host.accel


def probe_host(
    root: Path = Path("/"),
    environ: Mapping[str, str] = os.environ,
    system: str | None = None,
    machine: str | None = None,
    capture: Callable[[list[str]], str] | None = None,
    accel_chosen: bool = False,
    firmware_needed: bool = True,
    cache: Path | None = None,
) -> Host:
    """Look at this machine. Everything it reads can be redirected for tests.

    With `accel_chosen` (an override is set) the accelerator is not probed,
    which saves running qemu; without `firmware_needed` (kernel images)
    firmware is not looked for. With a `cache` directory, what qemu says about
    its accelerators is remembered per qemu binary.
    """
    system = (system or os.uname().sysname).lower()
    arch = Arch.from_machine(machine or os.uname().machine)
    if capture is None:
        from .run import capture
    qemu = environ.get(QEMU_ENV) or shutil.which(arch.qemu_binary())
    host = Host(
        system=system,
        arch=arch,
        accel="tcg",
        qemu=environ.get(QEMU_ENV) or arch.qemu_binary(),  # found on PATH, so the bare name reads best
        qemu_found=qemu is not None,
        bridges=_bridges(root) if system == "linux" else frozenset(),
        is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
    )
    if not accel_chosen:
        host = replace(host, accel=_native_accel(host, root, capture, cache))
    if not firmware_needed:
        return host
    prefixes = [Path(os.path.realpath(qemu)).parent.parent] if qemu else []
    prefixes += [Path("/usr"), Path("/usr/local"), Path("/opt/homebrew")]
    try:
        firmware = find_firmware(arch.value, arch.machine_family(), root, prefixes)
        return replace(host, firmware=firmware)
    except errors.HostError as error:
        # Only cloud images need firmware; keep the reason for when one does.
        return replace(host, firmware_error=str(error))


def _native_accel(host: Host, root: Path, capture: Callable[[list[str]], str], cache: Path | None) -> str:
    if host.system == "darwin":
        if host.arch is Arch.aarch64 and _capture_or_empty(capture, ["sysctl", "-n", "kern.hv_support"]).strip() == "1":
            return "hvf"
        return "tcg"
    if host.system == "linux" and host.qemu_found and _kvm_opens(root):
        if "kvm" in qemu_accelerators(host.qemu, capture, cache):
            return "kvm"
    return "tcg"


def qemu_accelerators(qemu: str, capture: Callable[[list[str]], str], cache: Path | None = None) -> list[str]:
    """The words of `qemu -accel help`. Asking starts qemu, which pipelines feel
    (~20 ms), so the answer is kept in `cache` per binary: path, size and mtime."""
    binary = shutil.which(qemu) if cache is not None else None
    entry = cache / _binary_key(binary) if binary else None
    if entry is not None:
        try:
            return entry.read_text().split()
        except OSError:
            pass
    listed = _capture_or_empty(capture, [qemu, "-accel", "help"]).split()
    if entry is not None and listed:
        from .fsutil import write_atomic

        try:
            write_atomic(entry, " ".join(listed).encode(), 0o644)
        except OSError:
            pass  # an unwritable cache only costs time
    return listed


def _binary_key(binary: str) -> str:
    real = os.path.realpath(binary)
    info = os.stat(real)
    return f"accel{real.replace('/', '%')}-{info.st_size}-{info.st_mtime_ns}"


def _kvm_opens(root: Path) -> bool:
    """Really open /dev/kvm: existing is not enough, the user must be allowed to use it."""
    try:
        os.close(os.open(root / "dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def _capture_or_empty(capture: Callable[[list[str]], str], argv: list[str]) -> str:
    try:
        return capture(argv)
    except (OSError, errors.KubenetError):
        return ""


def _bridges(root: Path) -> frozenset[str]:
    net = root / "sys/class/net"
    try:
        return frozenset(entry.name for entry in net.iterdir() if (entry / "bridge").is_dir())
    except OSError:
        return frozenset()
