"""Where kubenet keeps each VM's files and the cluster-wide ones (under state_dir),
and what it caches per user (base images, probe answers)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

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
        """The UEFI variable store, as qcow2 so that a snapshot holds it with the disk."""
        return self.dir / "efivars.qcow2"

    @property
    def raw_efivars(self) -> Path:
        """Where an earlier kubenet kept the store (raw); converted once to `efivars`."""
        return self.dir / "efivars.fd"

    @property
    def guest_agent(self) -> Path:
        """The socket of the guest agent's virtio port (the guest's clock is set through it)."""
        return self.dir / "qga.sock"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def meta_data(self) -> Path:
        """The plain copy of the seed's meta-data (its instance-id)."""
        return self.dir / "meta-data"

    @property
    def booted_instance(self) -> Path:
        """The cloud-init instance-id of the seed the VM last booted with."""
        return self.dir / "booted-instance"

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
    def cloud_init_marker(self) -> Path:
        """Holds the pid of the qemu whose guest reported cloud-init finished."""
        return self.dir / "cloud-init-done"

    @property
    def lock(self) -> Path:
        return self.dir / ".lock"


def vm_paths(cluster: Cluster, vm: VM) -> VMPaths:
    return VMPaths(cluster.state_dir / vm.name)


def snapshots_dir(cluster: Cluster) -> Path:
    """Where each whole-cluster snapshot's record is kept (its data is inside the VMs' images)."""
    return cluster.state_dir / "snapshots"


def ssh_config_path(cluster: Cluster) -> Path:
    return cluster.state_dir / "ssh_config"


def known_hosts_path(cluster: Cluster) -> Path:
    return cluster.state_dir / "known_hosts"


# libvdeplug (qemu's side of a VDE cable) cannot open a switch whose path holds a quote.
VDE_UNSAFE = frozenset("\"'")


def vde_socket_path(cluster: Cluster, environ: Mapping[str, str] = os.environ) -> Path:
    """vde_switch's control directory, which `-nic vde,sock=` joins: in state_dir, or, where
    state_dir's path holds what libvdeplug cannot open, in the user's runtime directory
    under a name made from state_dir's."""
    own = cluster.state_dir / "vde.ctl"
    if not VDE_UNSAFE & set(str(own)):
        return own
    import hashlib

    return runtime_dir(environ) / f"vde-{hashlib.sha256(str(cluster.state_dir).encode()).hexdigest()[:16]}.ctl"


def runtime_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's own directory for sockets: $XDG_RUNTIME_DIR/kubenet, else /tmp/kubenet-<uid>."""
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "kubenet"
    return Path(f"/tmp/kubenet-{os.getuid()}")


CACHE_ENV = "KUBENET_CACHE"


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user cache: $KUBENET_CACHE, else $XDG_CACHE_HOME/kubenet, else ~/.cache/kubenet."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubenet"


# A unix socket's path has room for 104 bytes (macOS); ssh -M first binds it with 17 more.
MAX_SOCKET_PATH = 80
