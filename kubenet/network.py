"""Network modes: which one applies on this host, and the NIC options each gives a VM.

- vmnet-shared: macOS's shared network, as in the tutorial (qemu needs root).
- bridge: a tap on an existing Linux bridge through qemu's bridge helper.
- user: rootless; a user-mode NIC with SSH forwarded from 127.0.0.1, plus a
  NIC on a VDE switch that carries the cluster addresses between VMs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import errors
from .cluster import SLIRP_SUBNET, VM, Network
from .host import Host

LOOPBACK = "127.0.0.1"

NIC_MODEL = "virtio-net-pci"
# The user-mode NIC's MAC; slirp networks are private to each VM, so the
# prefix only has to differ from the cluster NIC's.
USER_NIC_MAC_PREFIX = "52:54:00:00:00"


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def resolve_mode(network: Network, host: Host) -> str:
    """The concrete mode for `auto`, and a clear error for a mode this host cannot run."""
    mode = network.mode
    if mode == "auto":
        if host.system == "darwin":
            return "vmnet-shared"
        if host.bridges is None or network.bridge in host.bridges:
            return "bridge"
        if network.subnet.overlaps(SLIRP_SUBNET):
            raise errors.HostError(
                f"network.subnet {network.subnet} overlaps {SLIRP_SUBNET}, the network of user mode, which this host needs",
                "choose another subnet, or create the bridge for network.mode: bridge",
            )
        return "user"
    if mode == "vmnet-shared" and host.system != "darwin":
        raise errors.HostError("network mode vmnet-shared needs macOS", "set network.mode to bridge or user")
    if mode == "bridge":
        if host.system != "linux":
            raise errors.HostError("network mode bridge needs Linux", "set network.mode to vmnet-shared or user")
        if host.bridges is not None and network.bridge not in host.bridges:
            raise errors.HostError(
                f"bridge {network.bridge} does not exist",
                f"create it (sudo ip link add {network.bridge} type bridge && "
                f"sudo ip addr add {network.host_address}/{network.subnet.prefixlen} dev {network.bridge} && "
                f"sudo ip link set {network.bridge} up) or set network.mode: user",
            )
    return mode


def user_nic_mac(vm: VM) -> str:
    return f"{USER_NIC_MAC_PREFIX}:{vm.id:02x}"


def ssh_port(network: Network, vm: VM) -> int:
    return network.ssh_port_base + vm.id


def ssh_endpoint(network: Network, mode: str, vm: VM) -> SshEndpoint:
    if mode == "user":
        return SshEndpoint(LOOPBACK, ssh_port(network, vm))
    return SshEndpoint(str(vm.ip), 22)


def nic_options(network: Network, mode: str, vm: VM, vde_socket: Path) -> list[str]:
    if mode == "vmnet-shared":
        return [
            "-nic",
            f"vmnet-shared,start-address={network.host_address},end-address={network.dhcp_end},"
            f"subnet-mask={network.subnet.netmask},mac={vm.mac}",
        ]
    if mode == "bridge":
        return ["-nic", f"bridge,br={network.bridge},model={NIC_MODEL},mac={vm.mac}"]
    return [
        "-nic",
        f"user,model={NIC_MODEL},mac={user_nic_mac(vm)},hostfwd=tcp:{LOOPBACK}:{ssh_port(network, vm)}-:22",
        "-nic",
        f"vde,sock={vde_socket},model={NIC_MODEL},mac={vm.mac}",
    ]



BRIDGE_HELPERS = (
    "usr/lib/qemu/qemu-bridge-helper",
    "usr/libexec/qemu-bridge-helper",
    "usr/local/libexec/qemu-bridge-helper",
)


def needs_root(mode: str, host: Host, root: Path = Path("/")) -> bool:
    """vmnet needs root; a bridge does too unless qemu's bridge helper is setuid root."""
    if host.is_root:
        return False
    if mode == "vmnet-shared":
        return True
    if mode == "bridge":
        return not any(_setuid_root(root / helper) for helper in BRIDGE_HELPERS)
    return False


def _setuid_root(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == 0 and bool(info.st_mode & 0o4000)
