"""Run one VM: check its files, start what its network needs, then exec qemu."""

from __future__ import annotations

from . import errors
from .cluster import VM, Cluster
from .host import Host
from .network import resolve_mode
from .paths import vm_paths
from .qemu import Management, qemu_argv


def management_for(cluster: Cluster, vm: VM) -> Management:
    paths = vm_paths(cluster, vm)
    return Management(qmp=paths.qmp.absolute(), serial_log=paths.serial_log.absolute())


def missing_files(cluster: Cluster, vm: VM, host: Host) -> list[str]:
    paths = vm_paths(cluster, vm)
    needed = [paths.disk, paths.seed]
    if cluster.image.kind == "cloud" and host.firmware and host.firmware.vars_template and host.arch.value == "x86_64":
        needed.append(paths.efivars)
    return [str(path) for path in needed if not path.exists()]


def launch_argv(cluster: Cluster, vm: VM, host: Host, accel: str, managed: bool) -> list[str]:
    """The command to run, after making sure the VM can start with it."""
    mode = resolve_mode(cluster.network, host)
    argv = qemu_argv(cluster, vm, host, accel, mode, management_for(cluster, vm) if managed else None)
    if not host.qemu_found:
        raise errors.HostError(
            f"{host.qemu} not found",
            "install qemu (`apt install qemu-system`, `brew install qemu`) or set KUBENET_QEMU",
        )
    missing = missing_files(cluster, vm, host)
    if missing:
        raise errors.SetupError(
            f"{vm.name} is not set up: missing {', '.join(missing)}",
            f"run `make setup` or `invoke vmsetup --id {vm.id}`",
        )
    if mode == "user":
        from .vde import ensure_switch

        ensure_switch(cluster)
    return argv


def exec_vm(cluster: Cluster, vm: VM, host: Host, accel: str, managed: bool) -> None:
    from .run import replace_process

    replace_process(launch_argv(cluster, vm, host, accel, managed))
