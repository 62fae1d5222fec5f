"""Whether a VM runs, under which pid, what its guest already passed, and what its qemu
says it is doing.

qemu's pid file is trusted only while that pid is provably this VM's qemu (its
arguments name the pid file); a qemu that kubenet did not start, such as
`invoke vm`'s, is seen by the lock it holds on the VM's disk.

What a running qemu's guest passed (SSH answered, cloud-init finished) is kept in
marker files holding that qemu's pid and the guest's boot: written by readiness, read
here, and forgotten whenever the VM's qemu starts or stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..model.cluster import VM, Cluster
from ..model.paths import vm_paths
from ..plumbing.fsutil import write_atomic
from ..plumbing.process import MAX_PID, own_pid
from ..prepare.disk import disk_in_use


@dataclass(frozen=True)
class VMState:
    running: bool
    pid: int | None  # None: not running, or running without a pid file kubenet wrote


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
        return VMState(running=disk_in_use(vm_paths(cluster, vm).disk), pid=None)
    return VMState(running=True, pid=pid)


def run_state(cluster: Cluster, vm: VM) -> str | None:
    """What the VM's qemu says it is doing (running, paused, internal-error, ...); None if it does not answer."""
    from ..plumbing.qmp import run_state as ask

    return ask(vm_paths(cluster, vm).qmp)


# ---- what the guest passed in this qemu's life ---------------------------------------


@dataclass(frozen=True)
class Proof:
    """What a guest proved in one qemu's life: under which pid, in which boot (its console
    marks' boot id; '' for an image that prints none), and how much of the console log
    had been written then (a later boot's marks come after it)."""

    pid: int
    boot: str = ""
    offset: int = 0
    cloud_init: str = ""  # how cloud-init had ended (done, disabled, absent), in its marker


def read_proof(marker: Path) -> Proof | None:
    """A marker's proof; None when it is missing or not one."""
    try:
        with open(marker, "rb") as stream:
            lines = stream.read(256).decode("ascii").splitlines()
    except (OSError, UnicodeError):
        return None
    pid, boot, offset, cloud_init = (lines + ["", "", "", ""])[:4]
    if not (pid.isdigit() and 0 < int(pid) <= MAX_PID):
        return None
    boot = boot if len(boot) <= 64 and boot.replace("-", "").isalnum() else ""
    cloud_init = cloud_init if cloud_init in ("done", "disabled", "absent") else ""
    return Proof(int(pid), boot, int(offset) if offset.isdigit() and len(offset) < 16 else 0, cloud_init)


def answered_before(cluster: Cluster, vm: VM, pid: int) -> Proof | None:
    """How SSH login worked with the qemu that runs as `pid`, if it did."""
    proof = read_proof(vm_paths(cluster, vm).ready_marker)
    return proof if proof is not None and proof.pid == pid else None


def cloud_init_done_before(cluster: Cluster, vm: VM, pid: int) -> Proof | None:
    """How the guest of the qemu that runs as `pid` reported cloud-init finished, if it did."""
    proof = read_proof(vm_paths(cluster, vm).cloud_init_marker)
    return proof if proof is not None and proof.pid == pid else None


def remember_answer(cluster: Cluster, vm: VM, proof: Proof) -> None:
    _mark(vm_paths(cluster, vm).ready_marker, proof)


def remember_cloud_init_done(cluster: Cluster, vm: VM, proof: Proof) -> None:
    _mark(vm_paths(cluster, vm).cloud_init_marker, proof)


def _mark(marker: Path, proof: Proof) -> None:
    try:
        write_atomic(marker, f"{proof.pid}\n{proof.boot}\n{proof.offset}\n{proof.cloud_init}\n".encode())
    except OSError:
        pass  # a marker only saves a later `up` a login; a full disk should not fail readiness


def forget_answers(cluster: Cluster, vm: VM) -> None:
    """The VM's qemu stops or starts anew: what its guest passed (SSH, cloud-init) no longer holds."""
    paths = vm_paths(cluster, vm)
    for marker in (paths.ready_marker, paths.cloud_init_marker):
        marker.unlink(missing_ok=True)
