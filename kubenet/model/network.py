"""Network modes: which one applies on this host, and the NIC options each gives a VM.

- vmnet-shared: macOS's shared network, as in the tutorial (qemu needs root).
- bridge: a tap on an existing Linux bridge through qemu's bridge helper.
- user: rootless; a user-mode NIC with SSH forwarded from 127.0.0.1, plus a
  NIC on a VDE switch that carries the cluster addresses between VMs.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ..plumbing import errors
from .cluster import SLIRP_SUBNET, VM, Cluster, Network, NetworkMode
from .host import Host

LOOPBACK = "127.0.0.1"
# How a user-mode (slirp) guest reaches its host.
SLIRP_HOST = IPv4Address("10.0.2.2")

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


def resolve_mode(network: Network, host: Host, bridge_needed: bool = True) -> NetworkMode:
    """The concrete mode for `auto`, and a clear error for a mode this host cannot run
    (bridge mode without its bridge too, unless `bridge_needed` is False: `doctor` says so)."""
    mode = network.mode
    if mode == NetworkMode.AUTO:
        if host.system == "darwin":
            return NetworkMode.VMNET_SHARED
        if host.bridges is None or network.bridge in host.bridges:
            return NetworkMode.BRIDGE
        if network.subnet.overlaps(SLIRP_SUBNET):
            raise errors.HostError(
                f"network.subnet {network.subnet} overlaps {SLIRP_SUBNET}, the network of user mode, which this host needs",
                "choose another subnet, or create the bridge for network.mode: bridge",
            )
        return NetworkMode.USER
    if mode == NetworkMode.VMNET_SHARED and host.system != "darwin":
        raise errors.HostError("network mode vmnet-shared needs macOS", "set network.mode to bridge or user")
    if mode == NetworkMode.BRIDGE:
        if host.system != "linux":
            raise errors.HostError("network mode bridge needs Linux", "set network.mode to vmnet-shared or user")
        if bridge_needed and host.bridges is not None and network.bridge not in host.bridges:
            raise errors.HostError(
                f"bridge {network.bridge} does not exist",
                "run `make hostnet` (it makes the bridge with its address, NAT, DNS and DHCP, as cluster.yaml says), "
                "or set network.mode: user",
            )
    return mode


def colliding_routes(network: Network, host: Host) -> list[str]:
    """Routes of the host, other than through the cluster's bridge, that overlap the cluster's subnet
    (a home router's LAN is often 192.168.1.0/24 too)."""
    routes = host.routes or ()
    return [
        f"{destination} on {interface}"
        for interface, destination in routes
        if interface != network.bridge and destination.prefixlen > 0 and destination.overlaps(network.subnet)
    ]


def check_bridge_subnet(network: Network, host: Host) -> None:
    clashes = colliding_routes(network, host)
    if clashes:
        raise errors.HostError(
            f"network.subnet {network.subnet} overlaps what this host already reaches: {', '.join(clashes)}",
            "move the cluster to another subnet in cluster.yaml (network.subnet, host_address, api_address, dhcp_end), e.g. 192.168.100.0/24",
        )


def check_vmnet_shared(network: Network, host: Host) -> None:
    """macOS's vmnet refuses a shared range that disagrees with its own setting ("general failure")."""
    if host.vmnet_shared is None:
        return
    address, mask = host.vmnet_shared
    if (address, mask) != (network.host_address, network.subnet.netmask):
        subnet = IPv4Network(f"{address}/{mask}", strict=False)
        raise errors.HostError(
            f"macOS's vmnet shared network is {address} mask {mask} (Shared_Net_Address and Shared_Net_Mask in "
            f"{VMNET_PLIST}), but cluster.yaml asks for {network.host_address} mask {network.subnet.netmask}",
            f"set network.subnet: {subnet} and network.host_address: {address} (and api_address, dhcp_end inside it), "
            "or change the plist to match",
        )


VMNET_PLIST = "/Library/Preferences/SystemConfiguration/com.apple.vmnet.plist"
# From macOS 26 the system ignores the plist's range and takes the one qemu asks for
# (`-nic vmnet-shared,start-address=…`, which kubenet always gives); up to macOS 15 a
# plist that disagrees makes vmnet fail with "general failure".
VMNET_PLIST_IGNORED_FROM = 26


def vmnet_plist_honoured(macos_version: str) -> bool:
    """Whether this macOS takes the shared range from com.apple.vmnet.plist; an unknown
    version is taken to (checking a plist that is ignored costs nothing)."""
    major = macos_version.split(".")[0]
    return not major.isdigit() or int(major) < VMNET_PLIST_IGNORED_FROM


def user_nic_mac(vm: VM) -> str:
    return f"{USER_NIC_MAC_PREFIX}:{vm.id:02x}"


def ssh_port(network: Network, vm: VM) -> int:
    return network.ssh_port_base + vm.id


def ssh_endpoint(network: Network, mode: NetworkMode, vm: VM) -> SshEndpoint:
    if mode == NetworkMode.USER:
        return SshEndpoint(LOOPBACK, ssh_port(network, vm))
    return SshEndpoint(str(vm.ip), 22)


def nic_options(network: Network, mode: NetworkMode, vm: VM, vde_socket: Path) -> list[str]:
    if mode == NetworkMode.VMNET_SHARED:
        return [
            "-nic",
            f"vmnet-shared,start-address={network.host_address},end-address={network.dhcp_end},"
            f"subnet-mask={network.subnet.netmask},mac={vm.mac}",
        ]
    if mode == NetworkMode.BRIDGE:
        return ["-nic", f"bridge,br={network.bridge},model={NIC_MODEL},mac={vm.mac}"]
    return [
        "-nic",
        f"user,model={NIC_MODEL},mac={user_nic_mac(vm)},hostfwd=tcp:{LOOPBACK}:{ssh_port(network, vm)}-:22",
        "-nic",
        f"vde,sock={vde_socket},model={NIC_MODEL},mac={vm.mac}",
    ]



def host_address_for_guests(network: Network, mode: NetworkMode) -> IPv4Address:
    """The address the VMs reach the host at: on the cluster segment, or slirp's gateway in user mode."""
    return SLIRP_HOST if mode == NetworkMode.USER else network.host_address


def hosts_lines(cluster: Cluster, mode: NetworkMode) -> list[str]:
    """/etc/hosts lines for every cluster name, `vmhost` and `kubernetes`, plain and in the domain."""
    network, domain = cluster.network, cluster.network.domain
    entries = [(host_address_for_guests(network, mode), "vmhost"), (network.api_address, "kubernetes")]
    entries += [(vm.ip, vm.name) for vm in cluster.vms]
    return [f"{address} {name}.{domain} {name}" for address, name in entries]


def needs_root(mode: NetworkMode, host: Host) -> bool:
    """vmnet needs root; a bridge does too unless qemu's bridge helper is setuid root."""
    if host.is_root:
        return False
    if mode == NetworkMode.VMNET_SHARED:
        return True
    return mode == NetworkMode.BRIDGE and not host.bridge_helper_setuid


SSH_HINT = "install OpenSSH (`apt install openssh-client`)"


def ssh_argv(config: Path, vm: str, command: str | None = None, batch: bool = False, connect_timeout: int = 5) -> list[str]:
    """ssh to `vm` through `config`; `batch` for scripts: no prompts, a bounded connect
    (ssh's ConnectTimeout covers its handshake too: the server's banner and key exchange)."""
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"] if batch else []
    return ["ssh", "-F", str(config), *options, vm, *([command] if command is not None else [])]
