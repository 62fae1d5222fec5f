"""Look at this machine: OS, CPU, qemu, firmware, bridges, and the best accelerator.

Everything it reads can be redirected (a root directory, the environment, a
capture function) so that tests can describe any machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Callable, Mapping

from ..model.cluster import Accel, Network
from ..model.host import Arch, Host
from ..model.network import VMNET_PLIST, vmnet_plist_honoured
from ..plumbing import errors
from .firmware import find_firmware

QEMU_ENV = "KUBENET_QEMU"
BRIDGE_HELPERS = (
    "usr/lib/qemu/qemu-bridge-helper",
    "usr/libexec/qemu-bridge-helper",
    "usr/local/libexec/qemu-bridge-helper",
)


def probe_host(
    root: Path = Path("/"),
    environ: Mapping[str, str] = os.environ,
    system: str | None = None,
    machine: str | None = None,
    firmware_needed: bool = True,
) -> Host:
    """This machine as a Host. Without `firmware_needed` (kernel images) firmware is not looked for."""
    system = (system or os.uname().sysname).lower()
    arch = Arch.from_machine(machine or os.uname().machine)
    qemu = environ.get(QEMU_ENV) or shutil.which(arch.qemu_binary())
    host = Host(
        system=system,
        arch=arch,
        qemu=environ.get(QEMU_ENV) or arch.qemu_binary(),  # found on PATH, so the bare name reads best
        qemu_found=qemu is not None,
        bridges=_bridges(root) if system == "linux" else frozenset(),
        is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
        bridge_helper_setuid=any(setuid_root(helper) for helper in bridge_helpers(root)) and _tun_usable(root),
        memory=_memory(),
        routes=read_routes((root / "proc/net/route").read_text()) if system == "linux" and (root / "proc/net/route").is_file() else None,
        vmnet_shared=read_vmnet_shared(root / VMNET_PLIST.lstrip("/")) if system == "darwin" and vmnet_plist_honoured(platform.mac_ver()[0]) else None,
    )
    if not firmware_needed:
        return host
    prefixes = [Path(os.path.realpath(qemu)).parent.parent] if qemu else []
    prefixes += [Path("/usr"), Path("/usr/local"), Path("/opt/homebrew")]
    try:
        return _with(host, firmware=find_firmware(arch.value, arch.machine_family(), root, prefixes))
    except errors.HostError as error:
        # Only cloud images need firmware; keep the reason for when one does.
        return _with(host, firmware_error=str(error))


def probe_accel(
    host: Host, root: Path = Path("/"), capture: Callable[[list[str]], str] | None = None, cache: Path | None = None
) -> Accel:
    """The best accelerator this machine offers. On Linux that means asking qemu, which is
    remembered per qemu binary in `cache`."""
    capture = capture or _run_probe
    if host.system == "darwin":
        if host.arch is Arch.aarch64 and _capture_or_empty(capture, ["sysctl", "-n", "kern.hv_support"]).strip() == "1":
            return Accel.HVF
        return Accel.TCG
    if host.system == "linux" and host.qemu_found and _kvm_opens(root):
        if "kvm" in qemu_accelerators(host.qemu, capture, cache):
            return Accel.KVM
    return Accel.TCG


def _run_probe(argv: list[str]) -> str:
    from ..plumbing.process import run

    return run(argv, check=False, timeout=10).stdout


def _with(host: Host, **changes) -> Host:
    return replace(host, **changes)


def qemu_accelerators(qemu: str, capture: Callable[[list[str]], str], cache: Path | None = None) -> list[str]:
    """The words of `qemu -accel help`."""
    return _ask_qemu(qemu, ["-accel", "help"], capture, cache).split()


def qemu_version(qemu: str, capture: Callable[[list[str]], str] | None = None, cache: Path | None = None) -> tuple[int, int] | None:
    """qemu's (major, minor), from `qemu --version`; None when it does not say."""
    return parse_qemu_version(_ask_qemu(qemu, ["--version"], capture or _run_probe, cache))


def parse_qemu_version(text: str) -> tuple[int, int] | None:
    match = re.search(r"version (\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _ask_qemu(qemu: str, question: list[str], capture: Callable[[list[str]], str], cache: Path | None) -> str:
    """What `qemu <question>` prints, whitespace folded. Asking starts qemu, which pipelines
    feel (~20 ms), so the answer is kept in `cache` per binary: path, size and mtime."""
    binary = shutil.which(qemu) if cache is not None else None
    entry = cache / _binary_key(binary, question[0].strip("-")) if binary else None
    if entry is not None:
        try:
            return entry.read_text()
        except OSError:
            pass
    said = " ".join(_capture_or_empty(capture, [qemu, *question]).split())
    if entry is not None and said:
        from ..plumbing.fsutil import write_atomic

        try:
            write_atomic(entry, said.encode(), 0o644)
        except OSError:
            pass  # an unwritable cache only costs time
    return said


def _binary_key(binary: str, question: str) -> str:
    real = os.path.realpath(binary)
    info = os.stat(real)
    return f"{question}{real.replace('/', '%')}-{info.st_size}-{info.st_mtime_ns}"


def _tun_usable(root: Path) -> bool:
    """Whether this user may open /dev/net/tun (0666 on most systems; some lock it to root)."""
    return os.access(root / "dev/net/tun", os.R_OK | os.W_OK)


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


def read_routes(text: str) -> tuple[tuple[str, IPv4Network], ...]:
    """(interface, destination) of each IPv4 route in /proc/net/route (hexadecimal, host byte order)."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8:
            destination = IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
            mask = IPv4Address(int.from_bytes(bytes.fromhex(fields[7]), "little"))
            routes.append((fields[0], IPv4Network(f"{destination}/{mask}", strict=False)))
    return tuple(routes)


def read_vmnet_shared(plist: Path) -> tuple[IPv4Address, IPv4Address] | None:
    """The shared network macOS's vmnet is set to, if its plist names one."""
    import plistlib

    try:
        data = plistlib.loads(plist.read_bytes())
        return IPv4Address(data["Shared_Net_Address"]), IPv4Address(data["Shared_Net_Mask"])
    except (OSError, ValueError, KeyError, TypeError, plistlib.InvalidFileException):
        return None


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def bridge_helpers(root: Path = Path("/")) -> list[Path]:
    """qemu's bridge helpers installed under `root`, in the order qemu packages put them."""
    return [root / helper for helper in BRIDGE_HELPERS if (root / helper).is_file()]


def setuid_root(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == 0 and bool(info.st_mode & 0o4000)


# ---- the host's side of bridge mode: what `up` checks and `hostnet` changes --------------

FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")


def bridge_link(bridge: str) -> dict | None:
    """What `ip -j addr` says of the bridge; None when there is no such interface."""
    from ..plumbing.process import run

    done = run(["ip", "-j", "addr", "show", "dev", bridge], check=False)
    try:
        return json.loads(done.stdout)[0] if done.code == 0 and done.stdout.strip() else None
    except (ValueError, IndexError):
        return None


def ipv4_addresses(link: dict | None) -> list[str]:
    """An interface's IPv4 addresses as address/prefix."""
    return [f"{a.get('local')}/{a.get('prefixlen')}" for a in (link or {}).get("addr_info", []) if a.get("family", "inet") == "inet"]


def forwarding_on(path: Path = FORWARDING) -> bool | None:
    """Whether the host forwards IPv4; None when it cannot be read."""
    try:
        return path.read_text().strip() == "1"
    except OSError:
        return None


def answers_dns(address: str, timeout: float = 0.3) -> bool:
    """Whether something listens for DNS over TCP on `address` (the VMs' only nameserver)."""
    try:
        with socket.create_connection((address, 53), timeout=timeout):
            return True
    except OSError:
        return False


def host_address_with_prefix(network: Network) -> str:
    return f"{network.host_address}/{network.subnet.prefixlen}"


def has_host_address(network: Network) -> bool:
    """Whether the bridge exists here and carries the host's address on the cluster's subnet."""
    return host_address_with_prefix(network) in ipv4_addresses(bridge_link(network.bridge))


def bridge_side_gaps(network: Network, forwarding: Path = FORWARDING) -> list[str]:
    """What bridge mode needs of the host and does not find, as far as a user can see it
    (NAT needs root to inspect). Made by `invoke hostnet` or by hand, either will do."""
    gaps = [] if has_host_address(network) else [f"address {host_address_with_prefix(network)} on {network.bridge}"]
    if forwarding_on(forwarding) is False:
        gaps.append("IPv4 forwarding")
    if not gaps and not answers_dns(str(network.host_address)):
        gaps.append(f"a DNS server on {network.host_address} (the VMs' only nameserver)")
    return gaps


def port_taken(address: str, port: int) -> bool:
    """Whether a TCP port on `address` is held by something that listens or is bound: qemu's
    host forwarding could not bind it. Bound as qemu's user network does (SO_REUSEADDR), so
    a connection of a VM that just stopped, still in TIME_WAIT, does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return True
    return False


def sme_breaks_host_cpu(host: Host, cache: Path | None = None, capture: Callable[[list[str]], str] | None = None) -> bool:
    """macOS on Apple Silicon: whether `-cpu host` would fail at start (the CPU's SME, macOS
    15.2 on, a qemu before 10.0), from sysctl, sw_vers and qemu (see macos.py)."""
    from .macos import sme_breaks_host_cpu as breaks

    capture = capture or _run_probe
    if host.system != "darwin" or host.arch is not Arch.aarch64:
        return False
    sysctl = _capture_or_empty(capture, ["sysctl", "hw.optional.arm.FEAT_SME"])
    if "FEAT_SME: 1" not in sysctl:
        return False
    return breaks(sysctl, _capture_or_empty(capture, ["sw_vers", "-productVersion"]), _ask_qemu(host.qemu, ["--version"], capture, cache))

