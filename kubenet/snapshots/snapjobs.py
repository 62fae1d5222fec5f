"""The QMP side of a snapshot: which of a VM's drives hold it, its save, load and delete
jobs run to their end, and `Together`, which pauses every VM at once, acts on each, and
resumes them all only once every VM has acted (snapshot.py uses it)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..model.cluster import VM, Cluster
from ..model.paths import vm_paths
from ..plumbing.parallel import for_each
from ..plumbing.qmp import Monitor, QMPError
from .snaprecord import SnapshotError

JOB_SECONDS = 900.0  # the most one VM's save or load may take

Say = Callable[[str], None]


# ---- one VM's QMP side -----------------------------------------------------------------


@dataclass
class Drives:
    """Where a VM's snapshot goes: every writable drive, the memory into the disk's."""

    vmstate: str
    nodes: list[str]
    images: list[str]


def snapshot_drives(blocks: list[dict], vm: str, disk: Path) -> Drives:
    """From `query-block`: the VM's writable drives, each of which must be able to hold a snapshot."""
    nodes, images, vmstate = [], [], None
    for block in blocks:
        inserted = block.get("inserted")
        if not inserted or inserted.get("ro"):
            continue
        if inserted.get("drv") != "qcow2":
            raise SnapshotError(
                f"{vm}: its drive {block.get('device') or inserted.get('node-name')} ({inserted.get('drv')}, {inserted.get('file')}) cannot hold a snapshot",
                "give it format=qcow2, or readonly=on, in qemu_args",
            )
        nodes.append(inserted["node-name"])
        images.append(inserted["file"])
        if Path(inserted["file"]).absolute() == disk:
            vmstate = inserted["node-name"]
    if vmstate is None:
        raise SnapshotError(f"{vm}: its qemu has no writable disk {disk}", "restart it with `invoke stop --name {vm}` and `make up`")
    return Drives(vmstate, nodes, images)


def run_job(monitor: Monitor, command: str, arguments: dict) -> str | None:
    """Run a snapshot job to its end; None if it succeeded, else qemu's reason.

    QEMU runs the save or load itself in its main loop, so the monitor answers nothing,
    not even the command that started the job, until it is done: every wait here is
    bounded by the job's time, not by a QMP answer's."""
    job = f"kubenet-{command}"
    dismiss_finished(monitor)
    deadline = time.monotonic() + JOB_SECONDS
    left = lambda: deadline - time.monotonic()  # noqa: E731
    try:
        monitor.execute(command, {"job-id": job, **arguments}, timeout=left())
    except QMPError as error:
        if "not found" in error.desc:
            return f"its qemu has no {command} (QEMU 6.0 or later has)"
        return error.desc or str(error)
    while left() > 0:
        mine = [entry for entry in monitor.execute("query-jobs", timeout=left()) if entry["id"] == job]
        if not mine:
            return f"its {command} job vanished"
        if mine[0]["status"] == "concluded":
            monitor.execute("job-dismiss", {"id": job})
            return mine[0].get("error")
        time.sleep(0.05)
    return f"its {command} did not finish within {JOB_SECONDS:g} s"


def dismiss_finished(monitor: Monitor) -> None:
    """Wait out kubenet's own jobs still running on this qemu (an earlier, interrupted command's) and dismiss them."""
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        ours = [entry for entry in monitor.execute("query-jobs", timeout=deadline - time.monotonic()) if entry["id"].startswith("kubenet-")]
        for entry in ours:
            if entry["status"] == "concluded":
                monitor.execute("job-dismiss", {"id": entry["id"]})
        if all(entry["status"] == "concluded" for entry in ours):
            return
        time.sleep(0.05)


# ---- all VMs at once -------------------------------------------------------------------


@dataclass
class Together:
    """One step taken by every running VM at once: connect all, pause all, `act` on each
    (None or a reason), then `decide` once for all (True: keep what was done), `undo` on
    each if not, and resume all. Each VM's thread keeps its own QMP connection."""

    cluster: Cluster
    vms: list[VM]
    act: Callable[[VM, Monitor, Drives], str | None]
    undo: Callable[[VM, Monitor, Drives], None]
    decide: Callable[[dict[str, str | None]], bool] = lambda outcome: not any(outcome.values())
    resume_failed: bool = True  # whether a VM whose act failed is resumed
    outcome: dict[str, str | None] = field(default_factory=dict)
    paused: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    kept: bool = False

    def run(self, say: Say) -> bool:
        self.stop = threading.Event()
        self.connected = threading.Barrier(len(self.vms))
        self.acted = threading.Barrier(len(self.vms), action=self._decide)
        try:
            for_each(self.vms, self._one, stop=self.stop, grace=JOB_SECONDS)
        except KeyboardInterrupt:
            say("kubenet: interrupted: the VMs keep what they had and run on")
            raise
        return self.kept

    def _decide(self) -> None:
        self.kept = not self.stop.is_set() and self.decide(self.outcome)

    def _one(self, vm: VM) -> None:
        paths = vm_paths(self.cluster, vm)
        monitor = drives = None
        try:
            monitor = Monitor(paths.qmp, vm.name, timeout=5.0)
            drives = snapshot_drives(monitor.execute("query-block"), vm.name, paths.disk.absolute())
        except (QMPError, SnapshotError) as error:
            self.outcome[vm.name] = one_line(error)
        try:
            try:
                self.connected.wait(30.0)
            except threading.BrokenBarrierError:
                self.outcome[vm.name] = self.outcome.get(vm.name) or "interrupted"
            # Every VM's connection is settled here: pause only if all could.
            if drives is not None and not any(self.outcome.values()) and not self.stop.is_set():
                monitor.execute("stop")
                self.paused[vm.name] = (time.monotonic(), None)
                self.outcome[vm.name] = self.act(vm, monitor, drives)
        except QMPError as error:
            self.outcome[vm.name] = one_line(error)
        finally:
            self.outcome.setdefault(vm.name, None)
            self._finish(vm, monitor, drives)

    def _finish(self, vm: VM, monitor: Monitor | None, drives: Drives | None) -> None:
        try:
            self.acted.wait()
        except threading.BrokenBarrierError:
            self.kept = False
        if monitor is None:
            return
        try:
            if vm.name in self.paused:
                if not self.kept:
                    self.undo(vm, monitor, drives)
                if self.outcome[vm.name] is None or self.resume_failed:
                    monitor.execute("cont")
                    self.paused[vm.name] = (self.paused[vm.name][0], time.monotonic())
        except QMPError as error:
            self.outcome[vm.name] = self.outcome[vm.name] or one_line(error)
        finally:
            monitor.close()


def one_line(error: Exception) -> str:
    return str(getattr(error, "message", None) or error).splitlines()[0]


def pause_figures(paused: dict[str, tuple[float, float | None]]) -> str:
    """The longest any VM was paused, and how far apart the first and last pause were."""
    if not paused:
        return ""
    starts = [start for start, _ in paused.values()]
    longest = max((end or time.monotonic()) - start for start, end in paused.values())
    return f"paused {longest:.2f} s at most, {(max(starts) - min(starts)) * 1000:.0f} ms apart"
