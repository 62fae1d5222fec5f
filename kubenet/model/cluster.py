"""The cluster as data: roles expand into VMs with names, resources, MACs and IPs.

Everything here is pure; config.py builds these objects from cluster.yaml.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path


class Choice(str, enum.Enum):
    """A value from a fixed set, written as cluster.yaml writes it (a StrEnum on Python 3.10 too)."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class NetworkMode(Choice):
    AUTO = "auto"  # decided per host: see network.resolve_mode
    VMNET_SHARED = "vmnet-shared"
    BRIDGE = "bridge"
    USER = "user"


class ImageKind(Choice):
    CLOUD = "cloud"  # a disk image booted through UEFI firmware
    KERNEL = "kernel"  # a kernel and initrd booted directly


class ReadyWhen(Choice):
    SSH = "ssh"  # SSH logs in
    CLOUD_INIT = "cloud-init"  # and cloud-init has finished (at once for guests without it)


class Accel(Choice):
    HVF = "hvf"
    KVM = "kvm"
    TCG = "tcg"


# QEMU user-mode networking's own subnet: a cluster subnet overlapping it is unreachable.
SLIRP_SUBNET = IPv4Network("10.0.2.0/24")

# MACs end in one octet per VM: ids 0-255.
MAX_MAC_IDS = 256

# The machine kubenet runs on, as `host:` names it; it needs no entry in `hosts:`.
LOCAL = "local"


@dataclass(frozen=True)
class Role:
    name: str
    count: int | None = None  # None: a single machine that keeps the bare role name
    vcpus: int = 2
    memory: str = "2G"  # as qemu's -m takes it
    qemu_args: tuple[str, ...] = ()  # appended to its VMs' qemu command lines, after the cluster's
    host: tuple[str, ...] = (LOCAL,)  # where its VMs run: one host, or a list its VMs take in turn
    cpu: str | None = None  # qemu's -cpu for its VMs; None: the host's under KVM/HVF (see machine.macos), max under TCG

    def vm_names(self) -> list[str]:
        if self.count is None:
            return [self.name]
        return [f"{self.name}{index}" for index in range(self.count)]


@dataclass(frozen=True)
class Network:
    mode: NetworkMode = NetworkMode.AUTO
    subnet: IPv4Network = IPv4Network("192.168.1.0/24")
    host_address: IPv4Address = IPv4Address("192.168.1.1")
    first_vm_offset: int = 10
    mac_prefix: str = "52:52:52:00:00"
    bridge: str = "kubr0"
    domain: str = "kubenet"
    api_address: IPv4Address = IPv4Address("192.168.1.21")
    dhcp_end: IPv4Address = IPv4Address("192.168.1.20")
    ssh_port_base: int = 2200


@dataclass(frozen=True)
class Image:
    kind: ImageKind = ImageKind.CLOUD
    # The disk image each VM's disk overlays; {arch} becomes amd64 or arm64.
    # None (kernel images without a url): each VM gets a blank disk.
    url: str | None = "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-{arch}.img"
    sha256: str | None = None
    # kernel: direct kernel boot, no firmware; `url` may still give a root disk
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""  # the serial console for the architecture is added


@dataclass(frozen=True)
class VM:
    id: int
    name: str
    role: str
    vcpus: int
    memory: str
    mac: str
    ip: IPv4Address
    host: str = LOCAL  # the host it runs on: where it is placed, never what it is


@dataclass(frozen=True)
class RemoteHost:
    """Another machine that runs some of the cluster's VMs (`hosts:`), reached over SSH."""

    name: str
    destination: str  # as ssh takes it: user@address, or address
    port: int = 22
    identity: Path | None = None  # the key to log in with; None: ssh's own choice
    known_hosts: Path | None = None  # where its host key is pinned; None: ~/.ssh/known_hosts
    kubenet: str = "kubenet"  # the kubenet program there (a path is relative to the home there)
    dir: str = ""  # where the cluster's files go there, relative to the home; "": kubenet-<cluster>

    def directory(self, cluster_name: str) -> str:
        return self.dir or f"kubenet-{cluster_name}"


@dataclass(frozen=True)
class Forward:
    """A port on the host's loopback forwarded to an address inside the cluster (`forward:`)."""

    port: int
    to_host: str  # a cluster name or address, as the VM the tunnel goes through resolves it
    to_port: int

    def __str__(self) -> str:
        return f"127.0.0.1:{self.port} -> {self.to_host}:{self.to_port}"


# The tutorial's cluster, used when cluster.yaml names no roles.
TUTORIAL_ROLES = (
    Role("gateway", None, 2, "2G"),
    Role("control", 3, 2, "2G"),
    Role("worker", 3, 4, "4G"),
)


@dataclass(frozen=True)
class Cluster:
    """Every key of cluster.yaml, with the tutorial's values as defaults (the one place they live)."""

    name: str = "kubenet"
    roles: tuple[Role, ...] = TUTORIAL_ROLES
    network: Network = field(default_factory=Network)
    image: Image = field(default_factory=Image)
    disk_size: str = "20G"
    user: str = "ubuntu"
    ssh_key: Path | None = None  # None: ~/.ssh/id_ed25519.pub, else ~/.ssh/id_rsa.pub
    templates: Path | None = None  # user-data templates; None: the ones kubenet ships
    accel: Accel | None = None  # None: the best the host offers
    tcg_tb_size: int | None = None  # MiB of TCG translation cache per VM; None: qemu.TCG_TB_SIZE_MIB
    state_dir: Path = Path(".kubenet")  # relative to the cluster file
    ready: ReadyWhen = ReadyWhen.CLOUD_INIT  # what `up` waits for
    qemu_args: tuple[str, ...] = ()  # appended to every VM's qemu command line, after kubenet's own
    forward: tuple[Forward, ...] = ()  # host ports tunnelled into the cluster through its first VM
    pod_routes: bool = False  # `hostnet` routes 10.N.0.0/16 via VM N (the tutorial's pod CIDRs, ch. 6)
    nfs: Path | None = None  # a host folder `hostnet` exports over NFS to the subnet (ch. 7); nfs: {path: …}
    hosts: tuple[RemoteHost, ...] = ()  # other machines running some of the VMs
    here: str = LOCAL  # which host reads this file: set in the copy sent to another host
    # Not keys of cluster.yaml: where it was read from, and its VMs.
    source: Path = Path("cluster.yaml")
    vms: tuple[VM, ...] = ()

    def vm_by_id(self, vm_id: int) -> VM | None:
        return next((vm for vm in self.vms if vm.id == vm_id), None)

    def vm_by_name(self, name: str) -> VM | None:
        return next((vm for vm in self.vms if vm.name == name), None)

    def vms_of_role(self, role: str) -> list[VM]:
        return [vm for vm in self.vms if vm.role == role]

    @property
    def local_vms(self) -> tuple[VM, ...]:
        """The VMs this host runs (every VM, unless `hosts:` places some elsewhere)."""
        return tuple(vm for vm in self.vms if vm.host == self.here)

    def remote_host(self, name: str) -> RemoteHost | None:
        return next((host for host in self.hosts if host.name == name), None)

    def placed_hosts(self) -> list[RemoteHost]:
        """The other hosts that run VMs of this cluster, in `hosts:` order (none on a host
        that is not the controlling one: it drives only its own VMs)."""
        if self.here != LOCAL:
            return []
        used = {vm.host for vm in self.vms}
        return [host for host in self.hosts if host.name in used]


# The keys cluster.yaml may have: every field of Cluster but where it came from and its VMs.
FILE_KEYS = tuple(f.name for f in fields(Cluster) if f.name not in ("source", "vms"))


def memory_bytes(size: str) -> int:
    """qemu's -m size (e.g. 4G) in bytes."""
    return int(size[:-1]) << {"K": 10, "M": 20, "G": 30, "T": 40}[size[-1].upper()]


def mac_address(prefix: str, vm_id: int) -> str:
    """The tutorial's 52:52:52:00:00:0<id>, as two hex digits so ids past 9 stay valid."""
    return f"{prefix}:{vm_id:02x}"


def ip_address(network: Network, vm_id: int) -> IPv4Address:
    return network.subnet.network_address + network.first_vm_offset + vm_id


def expand_vms(roles: tuple[Role, ...], network: Network) -> tuple[VM, ...]:
    """Ids are given in role order, starting at 0 with the first role's first VM; a role's
    VMs take its hosts in turn."""
    vms = []
    for role in roles:
        first = len(vms)
        for name in role.vm_names():
            vm_id = len(vms)
            vms.append(
                VM(
                    id=vm_id,
                    name=name,
                    role=role.name,
                    vcpus=role.vcpus,
                    memory=role.memory,
                    mac=mac_address(network.mac_prefix, vm_id),
                    ip=ip_address(network, vm_id),
                    host=role.host[(vm_id - first) % len(role.host)],
                )
            )
    return tuple(vms)
