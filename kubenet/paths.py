"""Where kubenet keeps each VM's files and the cluster-wide ones, under state_dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cluster import VM, Cluster


@dataclass(frozen=True)
class VMPaths:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.img"

    @property
    def seed(self) -> Path:
        return self.dir / "cidata.iso"

    @property
    def efivars(self) -> Path:
        return self.dir / "efivars.fd"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def ready_marker(self) -> Path:
        """Holds the pid of the qemu whose SSH answered; stale once that qemu is gone."""
        return self.dir / "ready"

    @property
    def lock(self) -> Path:
        return self.dir / ".lock"


def vm_paths(cluster: Cluster, vm: VM) -> VMPaths:
    return VMPaths(cluster.state_dir / vm.name)


def ssh_config_path(cluster: Cluster) -> Path:
    return cluster.state_dir / "ssh_config"


def known_hosts_path(cluster: Cluster) -> Path:
    return cluster.state_dir / "known_hosts"


def vde_socket_path(cluster: Cluster) -> Path:
    """vde_switch's control directory, which `-nic vde,sock=` joins."""
    return cluster.state_dir / "vde.ctl"
