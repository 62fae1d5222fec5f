"""Whether a VM runs, under which pid, what its guest already passed, and what its qemu
says it is doing.

qemu's pid file is trusted only while that pid is provably this VM's qemu (its
arguments name the pid file); a qemu that kubenet did not start, such as
`invoke vm`'s, is seen by the lock it holds on the VM's disk.

What a running qemu's guest passed (SSH answered, cloud-init finished) is kept in
marker files holding that qemu's pid: written by readiness, read here, and
forgotten whenever the VM's qemu starts or stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cluster import VM, Cluster
from .disk import disk_in_use
from .fsutil import write_atomic
from .paths import vm_paths
from .process import own_pid, read_pid


@dataclass(frozen=True)
class VMState:
    running: bool
    pid: int | None  # None: not running, or running without a pid file kubenet wrote
    ready: bool  # its guest answered SSH in this qemu's life (a marker; `ls` checks it anew)


def qemu_pid(cluster: Cluster, vm: VM) -> int | None:
    """The pid of the VM's qemu if it runs: the pid file's, once it is confirmed to be this VM's qemu."""
    paths = vm_paths(cluster, vm)
    return own_pid(paths.pidfile, str(paths.pidfile), lambda: disk_in_use(paths.disk))


def is_running(cluster: Cluster, vm: VM) -> bool:
    return vm_state(cluster, vm).running


def vm_state(cluster: Cluster, vm: VM) -> VMState:
    """Running: the qemu `up` started (pid file), or any other that has the disk open,
    such as `invoke vm`'s, which leaves no pid file to tell its pid."""
    pid = qemu_pid(cluster, vm)
    if pid is None:
        return VMState(running=disk_in_use(vm_paths(cluster, vm).disk), pid=None, ready=False)
    return VMState(running=True, pid=pid, ready=answered_before(cluster, vm, pid))


def run_state(cluster: Cluster, vm: VM) -> str | None:
    """What the VM's qemu says it is doing (running, paused, internal-error, ...); None if it does not answer."""
    from .qmp import run_state as ask

    return ask(vm_paths(cluster, vm).qmp)


# ---- what the guest passed in this qemu's life ---------------------------------------


def answered_before(cluster: Cluster, vm: VM, pid: int) -> bool:
    """Whether SSH login already worked with the qemu that runs as `pid`."""
    return read_pid(vm_paths(cluster, vm).ready_marker) == pid


def cloud_init_done_before(cluster: Cluster, vm: VM, pid: int) -> bool:
    """Whether the guest of the qemu that runs as `pid` already reported cloud-init finished."""
    return read_pid(vm_paths(cluster, vm).cloud_init_marker) == pid


def remember_answer(cluster: Cluster, vm: VM, pid: int) -> None:
    _mark(vm_paths(cluster, vm).ready_marker, pid)


def remember_cloud_init_done(cluster: Cluster, vm: VM, pid: int) -> None:
    _mark(vm_paths(cluster, vm).cloud_init_marker, pid)


def _mark(marker: Path, pid: int) -> None:
    try:
        write_atomic(marker, f"{pid}\n".encode())
    except OSError:
        pass  # a marker only saves a later `up` a login; a full disk should not fail readiness


def forget_answers(cluster: Cluster, vm: VM) -> None:
    """The VM's qemu stops or starts anew: what its guest passed (SSH, cloud-init) no longer holds."""
    paths = vm_paths(cluster, vm)
    for marker in (paths.ready_marker, paths.cloud_init_marker):
        marker.unlink(missing_ok=True)
