"""Kinds of host machine as data: CPU architectures, what a host offers, and the hosts
`--host` can describe. Pure: probe.py looks at the real machine.

Per-architecture choices live on the Arch enum so the rest of the code never
branches on architecture names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ..plumbing import errors
from .cluster import Accel, Cluster, ImageKind


# (code, vars template) per architecture, tried in order when no descriptor fits.
KNOWN_PATHS = {
    "x86_64": (
        ("usr/share/OVMF/OVMF_CODE_4M.fd", "usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("usr/share/OVMF/OVMF_CODE.fd", "usr/share/OVMF/OVMF_VARS.fd"),
        ("usr/share/edk2/ovmf/OVMF_CODE.fd", "usr/share/edk2/ovmf/OVMF_VARS.fd"),
        ("opt/homebrew/share/qemu/edk2-x86_64-code.fd", "opt/homebrew/share/qemu/edk2-i386-vars.fd"),
        ("usr/local/share/qemu/edk2-x86_64-code.fd", "usr/local/share/qemu/edk2-i386-vars.fd"),
    ),
    "aarch64": (
        ("opt/homebrew/share/qemu/edk2-aarch64-code.fd", "opt/homebrew/share/qemu/edk2-arm-vars.fd"),
        ("usr/local/share/qemu/edk2-aarch64-code.fd", "usr/local/share/qemu/edk2-arm-vars.fd"),
        ("usr/share/AAVMF/AAVMF_CODE.fd", "usr/share/AAVMF/AAVMF_VARS.fd"),
        ("usr/share/qemu-efi-aarch64/QEMU_EFI.fd", None),
        ("usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "usr/share/edk2/aarch64/vars-template-pflash.raw"),
    ),
}


@dataclass(frozen=True)
class Firmware:
    code: Path
    vars_template: Path | None = None
    # Set when found by a fallback rather than a descriptor, for the user to read.
    note: str | None = None


def known_firmware(arch: str, code: str) -> Firmware:
    """The well-known firmware whose code file is `code` (relative to /), with its variable store."""
    template = dict(KNOWN_PATHS[arch])[code]
    return Firmware(Path("/") / code, Path("/") / template if template else None)


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

    def max_vcpus(self) -> int:
        """The most vCPUs qemu gives one VM of this machine type (q35: 288; virt with GICv3: 512)."""
        return {Arch.x86_64: 288, Arch.aarch64: 512}[self]

    def has_vars_store(self) -> bool:
        """Whether each VM gets its own UEFI variable store (OVMF's split firmware)."""
        return self is Arch.x86_64

    def firmware_options(self, firmware: Firmware, efivars: Path) -> list[str]:
        if not self.has_vars_store():
            # The tutorial's way; edk2 for virt runs from a read-only -bios image.
            return ["-bios", str(firmware.code)]
        # OVMF is split in code and a per-VM variable store, both as pflash.
        return [
            "-drive", f"if=pflash,format=raw,unit=0,file={firmware.code},readonly=on",
            # qcow2, so that a snapshot holds the variables (boot entries) with the disk
            "-drive", f"if=pflash,format=qcow2,unit=1,file={efivars}",
        ]  # fmt: skip

    def disk_options(self, disk: Path) -> list[str]:
        if self is Arch.aarch64:
            return ["-hda", str(disk)]  # virt attaches -hda as virtio, as in the tutorial
        # virtio (-hda would be slow IDE on q35), first in UEFI's boot order: before q35's empty DVD drive
        return ["-drive", f"file={disk},if=none,id=disk,format=qcow2", "-device", "virtio-blk-pci,drive=disk,bootindex=1"]


@dataclass(frozen=True)
class Host:
    """What a machine offers for running VMs (its accelerator is chosen in target.py)."""

    system: str  # "darwin" or "linux"
    arch: Arch
    qemu: str  # path or name of qemu-system-<arch>
    qemu_found: bool = True
    firmware: Firmware | None = None
    # Names of existing network bridges; None when unknown (a described host).
    bridges: frozenset[str] | None = None
    is_root: bool = False
    # Whether qemu's bridge helper makes taps for the user, so bridge mode needs no sudo:
    # it is setuid root, and /dev/net/tun is open to the user (the helper opens it after
    # dropping to the user with CAP_NET_ADMIN alone).
    bridge_helper_setuid: bool = False
    # Why no firmware was found; raised only when a cloud image needs it.
    firmware_error: str | None = None
    memory: int | None = None  # bytes of RAM; None when unknown (a described host)
    # Linux: the host's IPv4 routes as (interface, network); None when unknown.
    routes: tuple[tuple[str, IPv4Network], ...] | None = None
    # macOS: the shared network vmnet is set to (com.apple.vmnet.plist), when it names one.
    vmnet_shared: tuple[IPv4Address, IPv4Address] | None = None  # (address, mask)
    # qemu's (major, minor); probed only when it matters (how qemu is told to drop root), None when unknown.
    qemu_version: tuple[int, int] | None = None
    # macOS: the CPU has SME and this qemu cannot hide it, so `-cpu host` fails at start (machine.macos).
    sme_breaks_host_cpu: bool = False


def needs_efivars(cluster: Cluster, host: Host) -> bool:
    """The one rule: a cloud image boots through UEFI, and OVMF keeps each VM's variables apart."""
    return cluster.image.kind == ImageKind.CLOUD and host.arch.has_vars_store()


# Hosts that `--host` can describe: system, architecture, their accelerator, the firmware their packages install.
PROFILES = {
    "darwin-arm64": ("darwin", Arch.aarch64, Accel.HVF, "opt/homebrew/share/qemu/edk2-aarch64-code.fd"),
    "linux-x86_64": ("linux", Arch.x86_64, Accel.KVM, "usr/share/OVMF/OVMF_CODE_4M.fd"),
    "linux-aarch64": ("linux", Arch.aarch64, Accel.KVM, "usr/share/AAVMF/AAVMF_CODE.fd"),
}
PROFILE_ALIASES = {"darwin-aarch64": "darwin-arm64", "linux-amd64": "linux-x86_64", "linux-arm64": "linux-aarch64"}


def host_profile(name: str) -> tuple[Host, Accel]:
    """A described host and the accelerator such a machine offers."""
    key = PROFILE_ALIASES.get(name, name)
    if key not in PROFILES:
        raise errors.HostError(
            f"unknown host kind {name!r}; allowed: {', '.join(PROFILES)}", "leave out --host for this machine"
        )
    system, arch, accel, firmware_code = PROFILES[key]
    host = Host(system=system, arch=arch, qemu=arch.qemu_binary(), firmware=known_firmware(arch.value, firmware_code))
    return host, accel
