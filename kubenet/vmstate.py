"""Whether a VM runs, under which pid, and whether it answered SSH.

qemu's pid file is trusted only while that pid is provably this VM's qemu (its
arguments name the pid file); a qemu that kubenet did not start, such as
`invoke vm`'s, is seen by the lock it holds on the VM's disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cluster import VM, Cluster
from .disk import disk_in_use
from .paths import vm_paths
from .process import is_own_process


@dataclass(frozen=True)
class VMState:
    running: bool
    pid: int | None  # None: not running, or running without a pid file kubenet wrote
    ready: bool


def qemu_pid(cluster: Cluster, vm: VM) -> int | None:
    """The pid of the VM's qemu if it runs: the pid file's, once it is confirmed to be this VM's qemu."""
    paths = vm_paths(cluster, vm)
    try:
        pid = int(paths.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_own_process(pid, str(paths.pidfile.absolute()), lambda: disk_in_use(paths.disk)) else None


def is_running(cluster: Cluster, vm: VM) -> bool:
    return vm_state(cluster, vm).running


def vm_state(cluster: Cluster, vm: VM) -> VMState:
    """Running: the qemu `up` started (pid file), or any other that has the disk open,
    such as `invoke vm`'s, which leaves no pid file to tell its pid."""
    pid = qemu_pid(cluster, vm)
    if pid is None:
        return VMState(running=disk_in_use(vm_paths(cluster, vm).disk), pid=None, ready=False)
    return VMState(running=True, pid=pid, ready=answered_before(cluster, vm, pid))


def answered_before(cluster: Cluster, vm: VM, pid: int) -> bool:
    """Whether SSH login already worked with the qemu that runs as `pid` (the ready marker holds its pid)."""
    return marker_holds(vm_paths(cluster, vm).ready_marker, pid)


def forget_answers(cluster: Cluster, vm: VM) -> None:
    """The VM's qemu stops or starts anew: what its guest passed (SSH, cloud-init) no longer holds."""
    paths = vm_paths(cluster, vm)
    for marker in (paths.ready_marker, paths.cloud_init_marker):
        marker.unlink(missing_ok=True)


def marker_holds(marker: Path, pid: int) -> bool:
    """Whether a marker file names the qemu `pid`: what it records happened in this qemu's life."""
    try:
        return int(marker.read_text().strip()) == pid
    except (OSError, ValueError):
        return False
