"""The Macs learners buy today, read from what macOS and qemu print *: the CPU's Scalable
Matrix Extension (Apple M4, macOS 15.2 and later), which qemu releases before 10.0 cannot
give a guest (`-cpu host` then fails with "Property 'host-arm-cpu.sme' not found"), and the
address ranges macOS keeps for itself (its virtualization service's 192.168.64.0/24, and
from macOS 26 Internet Sharing's 192.168.2.0/24, which is vmnet-shared's default there).

Each function takes the text a command printed (`sysctl`, `sw_vers`, `qemu --version`,
`netstat -rn`), so that every Mac can be tested here without one.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network

# A CPU model HVF takes on every Apple Silicon Mac, and enough for today's arm64 distributions
# (ARMv8.2-A; Lima's choice for the same case, in qemu since 7.1).
SME_SAFE_CPU = "cortex-a76"
SME_FIXED_IN = (10, 0)  # the qemu release that gives a guest the host CPU with SME turned off
SME_FROM_MACOS = (15, 2)
SME_HINT = "update qemu (`brew upgrade qemu`), or set `cpu:` for the role in cluster.yaml (e.g. cpu: cortex-a76)"
# (range, what holds it, from which macOS major release)
RESERVED = (
    (IPv4Network("192.168.64.0/24"), "macOS's own virtualization service (vmnet's default shared network)", 11),
    (IPv4Network("192.168.2.0/24"), "macOS's Internet Sharing (vmnet-shared's default from macOS 26)", 26),
)


def sysctl_value(text: str, name: str) -> str | None:
    """`name`'s value from `sysctl NAME...` output (`name: value` lines)."""
    found = re.search(rf"^{re.escape(name)}:\s*(.*?)\s*$", text, re.MULTILINE)
    return found[1] if found else None


def has_sme(sysctl: str) -> bool:
    """Whether the CPU offers SME: `hw.optional.arm.FEAT_SME: 1` (Apple M4 and later)."""
    return sysctl_value(sysctl, "hw.optional.arm.FEAT_SME") == "1"


def macos_version(sw_vers: str) -> tuple[int, int] | None:
    """(major, minor) from `sw_vers` (`ProductVersion: 15.2`) or `sw_vers -productVersion` (`15.2`)."""
    found = re.search(r"ProductVersion:\s*(\d+)\.(\d+)", sw_vers) or re.match(r"\s*(\d+)\.(\d+)", sw_vers)
    return (int(found[1]), int(found[2])) if found else None


def qemu_release(version_text: str) -> tuple[int, int] | None:
    """(major, minor) from `qemu-system-aarch64 --version`."""
    found = re.search(r"version (\d+)\.(\d+)", version_text)
    return (int(found[1]), int(found[2])) if found else None


def sme_breaks_host_cpu(sysctl: str, sw_vers: str, qemu_version_text: str) -> bool:
    """Whether `-cpu host` fails at start on this Mac: the CPU has SME, macOS shows it (15.2 on),
    and this qemu cannot hide it from the guest (before 10.0)."""
    version, release = macos_version(sw_vers), qemu_release(qemu_version_text)
    return has_sme(sysctl) and version is not None and version >= SME_FROM_MACOS and (release is None or release < SME_FIXED_IN)


def cpu_model(asked: str | None, accel: str, sme_broken: bool) -> str:
    """The `-cpu` a VM gets: the role's `cpu:` when it names one; else the host's CPU under a
    hardware accelerator, but a model HVF takes where the host's would fail at start (SME);
    under TCG, `max`."""
    if asked:
        return asked
    if accel not in ("kvm", "hvf"):
        return "max"
    return SME_SAFE_CPU if accel == "hvf" and sme_broken else "host"


def reserved_clash(subnet: IPv4Network, macos_major: int | None) -> str | None:
    """What on this macOS holds addresses of `subnet`, if anything does."""
    for network, holder, since in RESERVED:
        if subnet.overlaps(network) and (macos_major is None or macos_major >= since):
            return f"{network} is {holder}"
    return None


def netstat_routes(text: str) -> list[tuple[str, IPv4Network]]:
    """(interface, network) of each IPv4 route `netstat -rn -f inet` lists with a prefix."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4 or not re.fullmatch(r"[\d.]+/\d+|[\d.]+", words[0]):
            continue
        address, _, prefix = words[0].partition("/")
        octets = address.split(".")
        if not prefix:  # `192.168.1` is netstat's short form of 192.168.1.0/24; a whole address is a host
            if len(octets) == 4:
                continue
            prefix = str(8 * len(octets))
        try:
            network = IPv4Network(f"{'.'.join(octets + ['0'] * (4 - len(octets)))}/{prefix}", strict=False)
        except ValueError:
            continue
        interface = next(word for word in reversed(words) if word != "!" and not word.isdigit())
        routes.append((interface, network))
    return routes
