"""Prepare a VM for launch: its disk, UEFI variables, host key and cloud-init seed.

Each step keeps what exists where it is the VM's data (disk, UEFI variables,
host key) and rewrites what is derived from cluster.yaml (seed, ssh files).
A per-VM lock makes two setups of the same VM at once safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import errors
from .cluster import VM, Cluster
from .disk import create_disk, create_efivars
from .fsutil import locked, private_dir, write_atomic
from .host import Arch, Host
from .paths import vm_paths
from .seed import read_templates, seed_files, write_seed_iso
from .sshkeys import ensure_host_key, login_key_path, read_login_key, write_ssh_files

PARTS = ("disk", "seed", "ssh")


@dataclass(frozen=True)
class SetupContext:
    cluster: Cluster
    host: Host
    mode: str  # the resolved network mode
    base_image: Path | None  # None: a blank disk (kernel images)


def needs_efivars(cluster: Cluster, host: Host) -> bool:
    return cluster.image.kind == "cloud" and host.arch is Arch.x86_64


@dataclass(frozen=True)
class SeedInputs:
    """What a seed is made from besides cluster.yaml, read (and so checked) before anything is written."""

    templates: dict[str, dict]
    login_key: str


def read_seed_inputs(cluster: Cluster) -> SeedInputs:
    return SeedInputs(read_templates(cluster), read_login_key(login_key_path(cluster)))


def setup_vm(context: SetupContext, vm: VM, parts=PARTS, say: Callable[[str], None] = print, inputs: SeedInputs | None = None) -> None:
    """Make what the VM lacks. Everything is checked first: a bad template, key or firmware
    stops setup before its first write, so a failed setup leaves no half-made VM."""
    cluster, host = context.cluster, context.host
    paths = vm_paths(cluster, vm)
    inputs = inputs or read_seed_inputs(cluster)
    efivars = needs_efivars(cluster, host)
    if efivars and "disk" in parts and (host.firmware is None or host.firmware.vars_template is None):
        raise errors.HostError(host.firmware_error or "UEFI firmware has no variable store template")
    private_dir(paths.dir, enforce=True)
    with locked(paths.lock):
        if "disk" in parts:
            if create_disk(paths.disk, cluster.disk_size, context.base_image):
                say(f"{vm.name}: created {paths.disk} ({cluster.disk_size})")
            else:
                say(f"{vm.name}: kept {paths.disk}")
            if efivars and create_efivars(paths.efivars, host.firmware.vars_template):
                say(f"{vm.name}: created {paths.efivars}")
        if "seed" in parts:
            write_seed(context, vm, inputs)
            say(f"{vm.name}: wrote {paths.seed}")


def write_seed(context: SetupContext, vm: VM, inputs: SeedInputs) -> None:
    cluster = context.cluster
    paths = vm_paths(cluster, vm)
    files = seed_files(cluster, vm, context.mode, inputs.templates, inputs.login_key, ensure_host_key(cluster, vm.name))
    for name, data in files.items():  # plain copies, to read and to feed to cloud-init tooling
        write_atomic(paths.dir / name, data)
    write_seed_iso(files, paths.seed)


def setup_ssh(context: SetupContext) -> list[Path]:
    """known_hosts and ssh_config for the whole cluster; cheap, so always rewritten."""
    return write_ssh_files(context.cluster, context.mode)


def reset_vm(cluster: Cluster, vm: VM) -> list[Path]:
    """Delete the VM's disk and UEFI variables, so the next setup makes a fresh VM.

    The host key and seed stay: the VM keeps its identity and its known_hosts line.
    """
    paths = vm_paths(cluster, vm)
    deleted = []
    with locked(paths.lock):
        for path in (paths.disk, paths.efivars):
            if path.exists():
                path.unlink()
                deleted.append(path)
    return deleted
