"""Whole-cluster snapshots: every VM at one moment, or none (`invoke snapshot`, `invoke snapshots`).

Live, with every VM running: one thread per VM holds that VM's QMP connection; all
pause together (`stop`), each saves its disk, UEFI variables and memory as internal
snapshots of its qcow2 images (QMP's `snapshot-save` job, QEMU >= 6.0: the images
keep it, no extra file to lose track of), and all resume together only once every VM
saved; if one fails, the others remove what they saved before resuming. A restore
pauses all, loads each (`snapshot-load`), resumes all, and sets every guest's clock
to the host's, through its guest agent or over SSH, and reads it back (guestclock.py).

Stopped, with no VM running: `qemu-img snapshot` makes or applies the tag on each
image; the next `up` boots from there.

A save holds the cluster lock: `up`, `down` and `reset` wait for it. A save cut short
(SIGKILL, a host crash) leaves a record that is not `complete`; the next snapshot
command or `up` removes its tag from every image and resumes the VMs it paused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..machine.target import Target
from ..model.cluster import VM, Cluster, memory_bytes
from ..model.host import needs_efivars
from ..model.paths import vm_paths
from ..plumbing.fsutil import free_bytes
from ..plumbing.parallel import for_each
from ..plumbing.process import run
from ..plumbing.qmp import Monitor
from ..prepare.disk import QEMU_IMG_HINT, repair_leaks, repair_leaks_later
from ..store.statedir import cluster_lock
from .snapjobs import Drives, Together, dismiss_finished, one_line, pause_figures, run_job, snapshot_drives
from .snaprecord import COMPLETE, SAVED, Record, SnapshotError, cluster_change, find_record, read_records, remove_record, size_text, write_record

MARGIN_SHARE, MARGIN_BYTES = 0.10, 256 << 20  # room beyond the VMs' memory a live save wants
INCOMPLETE = "interrupted"

Say = Callable[[str], None]


# ---- the cluster's state ---------------------------------------------------------------


def running_or_stopped(cluster: Cluster) -> tuple[list[VM], list[VM]]:
    """The cluster's VMs as (running under `up`, stopped); a VM running some other way is refused."""
    from ..run.vmstate import vm_state

    running, stopped = [], []
    for vm in cluster.vms:
        state = vm_state(cluster, vm)
        if state.running and state.pid is None:
            raise SnapshotError(
                f"{vm.name} runs in a qemu that kubenet did not start (such as `invoke vm`'s), which it cannot pause",
                "quit that qemu, then `make up`",
            )
        (running if state.running else stopped).append(vm)
    return running, stopped


def whole_cluster(cluster: Cluster, doing: str) -> bool:
    """True if every VM runs, False if none does; a mix is refused, as half a snapshot is none."""
    running, stopped = running_or_stopped(cluster)
    if running and stopped:
        raise SnapshotError(
            f"cannot {doing}: {' '.join(vm.name for vm in running)} running, {' '.join(vm.name for vm in stopped)} stopped",
            "a snapshot is of the whole cluster: `make up` to start the rest, or `invoke down` to stop all",
        )
    return bool(running)


def machines(cluster: Cluster, target: Target) -> dict[str, list[str]]:
    """Each VM's qemu command line as `up` runs it: the machine a live snapshot belongs to."""
    from ..run.launch import vm_argv

    return {vm.name: vm_argv(cluster, vm, target, managed=True) for vm in cluster.vms}


def images_of(cluster: Cluster, vm: VM, target: Target) -> list[Path]:
    paths = vm_paths(cluster, vm)
    return [paths.disk, *([paths.efivars] if needs_efivars(cluster, target.host) else [])]


def image_snapshots(image: Path) -> dict[str, int]:
    """The snapshots an image holds: name -> bytes of saved memory (readable while qemu runs)."""
    import json

    done = run(["qemu-img", "info", "-U", "--output=json", str(image)], missing_hint=QEMU_IMG_HINT)
    return {entry["name"]: int(entry.get("vm-state-size", 0)) for entry in json.loads(done.stdout).get("snapshots", [])}


def check_space(cluster: Cluster) -> None:
    """A live save writes each VM's memory into its disk: refuse before pausing anything
    when a file system holding VM directories cannot take their memory and a margin."""
    memory_on: dict[int, list] = {}  # file system -> [a VM directory on it, the memory of its VMs]
    for vm in cluster.vms:
        directory = vm_paths(cluster, vm).dir
        memory_on.setdefault(os.stat(directory).st_dev, [directory, 0])[1] += memory_bytes(vm.memory)
    for directory, memory in memory_on.values():
        needed = memory + max(int(memory * MARGIN_SHARE), MARGIN_BYTES)
        free = free_bytes(directory)
        if free < needed:
            raise SnapshotError(
                f"not enough space for a live snapshot: it needs about {size_text(needed)} (the VMs' {size_text(memory)} of memory and a margin), "
                f"the file system holding {directory} has {size_text(free)} free",
                "free some space, remove an old snapshot (`invoke snapshot rm NAME`), or `invoke down` and take a stopped one",
            )


# ---- after a save or restore ------------------------------------------------------


def set_clocks(cluster: Cluster, vms: list[VM], say: Say) -> list[str]:
    """Every guest's clock set to the host's and read back (guestclock.py); the VMs whose
    clock was measured wrong afterwards. One that could not be set or read is said, as is
    one set over SSH (no agent runs there), but not called wrong: nothing measured it."""
    from ..run.guestclock import ClockError, set_clock

    def one(vm: VM) -> str | None:
        try:
            done = set_clock(cluster, vm)
        except ClockError as error:
            say(f"kubenet: warning: {error}")
            return None
        if not done.right:
            say(f"kubenet: {vm.name}: its clock is {done.skew:+.1f} s off the host's after setting it")
            return vm.name
        if done.how == "ssh":
            say(f"kubenet: {vm.name}: no guest agent runs; its clock was set over SSH")
        return None

    return [name for name in for_each(vms, one) if name]


# ---- the commands ----------------------------------------------------------------------


def save(cluster: Cluster, target: Target, name: str, say: Say) -> Record:
    from .snaprecord import check_name

    check_name(name)
    with cluster_lock(cluster, say):
        _recover(cluster, target, say)
        if any(record.name == name for record in read_records(cluster)):
            raise SnapshotError(f"a snapshot named {name!r} exists", f"pick another name, or `invoke snapshot rm {name}` first")
        live = whole_cluster(cluster, "save a snapshot")
        if live:
            check_space(cluster)
        record = Record(name, live, {vm: {"machine": machine, "images": []} for vm, machine in machines(cluster, target).items()})
        write_record(cluster, record)  # first: a save cut short is found and undone
        started = time.monotonic()
        (save_live if live else save_stopped)(cluster, target, record, say)
        record.step = COMPLETE
        write_record(cluster, record)
        say(f"kubenet: saved snapshot {name} of {len(cluster.vms)} VMs ({'live' if live else 'stopped'}) in {time.monotonic() - started:.1f} s")
        return record


def save_live(cluster: Cluster, target: Target, record: Record, say: Say) -> None:
    arguments = lambda drives: {"tag": record.name, "vmstate": drives.vmstate, "devices": drives.nodes}  # noqa: E731

    def act(vm: VM, monitor: Monitor, drives: Drives) -> str | None:
        record.vms[vm.name]["images"] = drives.images
        return run_job(monitor, "snapshot-save", arguments(drives))

    def decide(outcome: dict[str, str | None]) -> bool:
        if any(outcome.values()):
            return False
        record.step = SAVED  # every VM holds it; resuming
        write_record(cluster, record)
        return True

    def undo(vm: VM, monitor: Monitor, drives: Drives) -> None:
        run_job(monitor, "snapshot-delete", {"tag": record.name, "devices": drives.nodes})

    together = Together(cluster, cluster.vms, act, undo, decide)
    try:
        kept = together.run(say)
    except KeyboardInterrupt:
        forget_failed_save(cluster, target, record)
        raise
    if not kept:
        forget_failed_save(cluster, target, record)
        failed = next((vm, why) for vm, why in together.outcome.items() if why)
        raise SnapshotError(f"snapshot {record.name} not saved: {failed[0]}: {failed[1]}; no VM keeps it, and every VM runs on")
    say(f"kubenet: {pause_figures(together.paused)}")
    late = set_clocks(cluster, cluster.vms, say)
    if late:
        say(f"kubenet: warning: the clocks of {' '.join(late)} are off the host's (see above)")


def forget_failed_save(cluster: Cluster, target: Target, record: Record) -> None:
    """After a failed or interrupted live save: a VM whose qemu died during it may hold the
    tag, and the clusters its unfinished save had taken (leaks, which only `check -r leaks`
    gives back; it touches nothing else)."""
    from ..run.vmstate import qemu_pid

    for vm in cluster.vms:
        if qemu_pid(cluster, vm) is None:
            images = images_of(cluster, vm, target)
            remove_from_images(images, record.name)
            repair_leaks(images)
    remove_record(cluster, record.name)


def save_stopped(cluster: Cluster, target: Target, record: Record, say: Say) -> None:
    def one(vm: VM) -> str | None:
        images = images_of(cluster, vm, target)
        record.vms[vm.name]["images"] = [str(image.absolute()) for image in images]
        try:
            for image in images:
                run(["qemu-img", "snapshot", "-c", record.name, str(image)], timeout=300, missing_hint=QEMU_IMG_HINT)
        except Exception as error:
            return one_line(error)
        return None

    failures = [(vm, why) for vm, why in zip(cluster.vms, for_each(cluster.vms, one, limit=4)) if why]
    if failures:
        for vm in cluster.vms:
            remove_from_images(images_of(cluster, vm, target), record.name)
        remove_record(cluster, record.name)
        raise SnapshotError(f"snapshot {record.name} not saved: {failures[0][0].name}: {failures[0][1]}; no VM keeps it")


def remove_from_images(images: list[Path], name: str) -> None:
    for image in images:
        if image.exists() and name in image_snapshots(image):
            run(["qemu-img", "snapshot", "-d", name, str(image)], timeout=300, missing_hint=QEMU_IMG_HINT)


def check_restorable(cluster: Cluster, target: Target, record: Record) -> None:
    if not record.usable:
        raise SnapshotError(f"snapshot {record.name} was never completed (its save was interrupted)", f"`invoke snapshot rm {record.name}`")
    change = cluster_change(record, machines(cluster, target))
    if change:
        raise SnapshotError(f"cannot restore {record.name}: {change}", "a snapshot returns the VMs it was taken of; take a new one of this cluster")
    for vm in cluster.vms:
        for image in record.vms[vm.name]["images"]:
            if not Path(image).exists() or record.name not in image_snapshots(Path(image)):
                raise SnapshotError(
                    f"cannot restore {record.name}: {vm.name}'s {Path(image).name} no longer holds it (was the VM reset since?)",
                    f"`invoke snapshot rm {record.name}` to forget it",
                )


def restore(cluster: Cluster, target: Target, name: str, say: Say) -> None:
    with cluster_lock(cluster, say):
        _recover(cluster, target, say)
        record = find_record(cluster, name)
        live = whole_cluster(cluster, f"restore {name}")
        if record.live and not live:
            raise SnapshotError(f"{name} is a live snapshot: it returns running VMs to a moment", "`make up` first, then restore it")
        if live and not record.live:
            raise SnapshotError(f"{name} is a snapshot of the stopped cluster: it rolls back the disks", "`invoke down` first, then restore it")
        check_restorable(cluster, target, record)
        started = time.monotonic()
        record.restoring = True  # first: a restore cut short is found and finished
        write_record(cluster, record)
        restore_live(cluster, record, say) if live else restore_stopped(cluster, target, record)
        record.restoring = False
        write_record(cluster, record)
        say(f"kubenet: restored snapshot {name} of {len(cluster.vms)} VMs in {time.monotonic() - started:.1f} s" + ("" if live else "; `make up` boots them from there"))


def restore_live(cluster: Cluster, record: Record, say: Say) -> None:
    def act(vm: VM, monitor: Monitor, drives: Drives) -> str | None:
        return run_job(monitor, "snapshot-load", {"tag": record.name, "vmstate": drives.vmstate, "devices": drives.nodes})

    together = Together(cluster, cluster.vms, act, undo=lambda *_: None, decide=lambda outcome: True, resume_failed=False)
    together.run(say)
    failed = [(vm, why) for vm, why in together.outcome.items() if why]
    if failed and not together.paused:
        raise SnapshotError(f"{record.name} not restored: {failed[0][0]}: {failed[0][1]}; every VM runs on as it was")
    if failed:
        raise SnapshotError(
            f"{record.name} not restored on {failed[0][0]}: {failed[0][1]}; it is paused, the other VMs run from the snapshot",
            f"`invoke stop --name {failed[0][0]}` and `make up`, then restore again",
        )
    say(f"kubenet: {pause_figures(together.paused)}")
    late = set_clocks(cluster, cluster.vms, say)
    if late:
        raise SnapshotError(f"restored {record.name}, but the clocks of {' '.join(late)} were measured off the host's", "see the lines above")


def restore_stopped(cluster: Cluster, target: Target, record: Record) -> None:
    def one(vm: VM) -> None:
        for image in record.vms[vm.name]["images"]:
            run(["qemu-img", "snapshot", "-a", record.name, image], timeout=300, missing_hint=QEMU_IMG_HINT)

    for_each(cluster.vms, one, limit=4)


def remove(cluster: Cluster, target: Target, name: str, say: Say) -> None:
    """Remove the snapshot from every VM's images, running or not, then its record."""
    with cluster_lock(cluster, say):
        record = find_record(cluster, name)
        drop_everywhere(cluster, target, record)
        remove_record(cluster, name)
        say(f"kubenet: removed snapshot {name}")


def drop_everywhere(cluster: Cluster, target: Target, record: Record, resume: bool = False) -> None:
    """The tag gone from every VM's images: through its qemu while it runs (which may
    resume it, when an interrupted save paused it), else with qemu-img."""
    from ..run.vmstate import qemu_pid

    def one(vm: VM) -> None:
        paths = vm_paths(cluster, vm)
        if qemu_pid(cluster, vm) is None:
            images = images_of(cluster, vm, target)
            remove_from_images(images, record.name)
            repair_leaks(images)
            return
        with Monitor(paths.qmp, vm.name, timeout=5.0) as monitor:
            dismiss_finished(monitor)
            drives = snapshot_drives(monitor.execute("query-block"), vm.name, paths.disk.absolute())
            why = run_job(monitor, "snapshot-delete", {"tag": record.name, "devices": drives.nodes})
            if why:
                raise SnapshotError(f"{vm.name}: cannot remove snapshot {record.name}: {why}")
            if resume and monitor.execute("query-status").get("status") == "paused":
                monitor.execute("cont")
        if resume:  # a save cut short may have left clusters taken, which only qemu-img gives back, once qemu is gone
            repair_leaks_later(paths.dir, images_of(cluster, vm, target))

    for_each([vm for vm in cluster.vms if vm.name in record.vms], one)


def recover(cluster: Cluster, target: Target, say: Say) -> None:
    """What `up` runs first: undo what a snapshot save cut short left, finish a restore cut short."""
    if not any(not record.usable or record.restoring for record in read_records(cluster)):
        return
    with cluster_lock(cluster, say):
        _recover(cluster, target, say)


def _recover(cluster: Cluster, target: Target, say: Say) -> None:
    """Undo what a save cut short left (called with the cluster lock held, so no save runs):
    a `saving` record's tag is removed everywhere; a `saved` one is complete but for the
    resume. Either way the VMs it paused run again. A restore cut short is finished."""
    for record in read_records(cluster):
        if record.restoring:
            finish_restore(cluster, target, record, say)
            continue
        if record.usable:
            continue
        if record.step == SAVED:
            resume_paused(cluster, [vm for vm in cluster.vms if vm.name in record.vms])
            record.step = COMPLETE
            write_record(cluster, record)
            say(f"kubenet: snapshot {record.name}'s save was cut short after every VM saved: it is complete, and its VMs run again")
            continue
        drop_everywhere(cluster, target, record, resume=True)
        remove_record(cluster, record.name)
        say(f"kubenet: snapshot {record.name}'s save was cut short: removed what it left, and its VMs run again")


def finish_restore(cluster: Cluster, target: Target, record: Record, say: Say) -> None:
    """A restore cut short (SIGKILL, a crash) left some VMs at the snapshot and some not, a live
    one every VM paused maybe: bring every VM to the snapshot, as the restore would have.
    Stopped: every image again (applying it twice is harmless), leaks repaired; live: every
    VM loads it again and all resume together. A cluster between the two cannot be finished
    either way: refused, saying which VMs run."""
    running, stopped = running_or_stopped(cluster)
    if record.live and stopped:
        raise SnapshotError(
            f"snapshot {record.name}'s live restore was cut short, and {' '.join(vm.name for vm in stopped)} stopped since",
            f"`invoke down`, then `invoke snapshot restore` of a stopped snapshot, or `invoke snapshot rm {record.name}` and `make up`",
        )
    if not record.live and running:
        raise SnapshotError(
            f"snapshot {record.name}'s restore was cut short, and {' '.join(vm.name for vm in running)} run on disks it may have half restored",
            "`invoke down`, then `make up`: it finishes the restore first",
        )
    if record.live:
        restore_live(cluster, record, say)
    else:
        restore_stopped(cluster, target, record)
        for vm in cluster.vms:
            repair_leaks([Path(image) for image in record.vms[vm.name]["images"]])
    record.restoring = False
    write_record(cluster, record)
    say(f"kubenet: snapshot {record.name}'s restore was cut short: finished it; every VM is back at {record.name}" + ("" if record.live else " (on disk)"))


def resume_paused(cluster: Cluster, vms: list[VM]) -> None:
    from ..run.vmstate import qemu_pid

    def one(vm: VM) -> None:
        if qemu_pid(cluster, vm) is None:
            return
        with Monitor(vm_paths(cluster, vm).qmp, vm.name, timeout=5.0) as monitor:
            dismiss_finished(monitor)
            if monitor.execute("query-status").get("status") == "paused":
                monitor.execute("cont")

    for_each(vms, one)


def listing(cluster: Cluster, target: Target) -> list[dict]:
    """A row per snapshot: name, when, live or stopped, its VMs, the memory it saved, whether usable."""
    records = read_records(cluster)
    if not records:
        return []
    images = sorted({image for record in records for vm in record.vms.values() for image in vm["images"]})
    held = dict(zip(images, for_each(images, lambda image: image_snapshots(Path(image)) if Path(image).exists() else {}, limit=8)))
    rows = []
    for record in records:
        sizes = [held.get(image, {}).get(record.name) for vm in record.vms.values() for image in vm["images"]]
        rows.append({
            "name": record.name,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)),
            "kind": "live" if record.live else "stopped",
            "vms": len(record.vms),
            "size": size_text(sum(size or 0 for size in sizes)),
            "state": "restoring" if record.restoring else "ready" if record.usable and None not in sizes else INCOMPLETE if not record.usable else "damaged",
            "vm_names": list(record.vms),
            "bytes": sum(size or 0 for size in sizes),
        })  # fmt: skip
    return rows


VERBS = ("save", "restore", "rm")


def run_verb(cluster: Cluster, target: Target, verb: str, name: str, say: Say) -> None:
    """`invoke snapshot VERB NAME`, for a cluster on one host (snapshots across hosts are refused)."""
    from ..model.choose import refuse_spread
    from .snaprecord import SnapshotError

    if verb not in VERBS:
        raise SnapshotError(f"unknown snapshot verb {verb!r}; allowed: {', '.join(VERBS)}", "e.g. invoke snapshot save stage-5")
    refuse_spread(cluster, "snapshots")
    {"save": save, "restore": restore, "rm": remove}[verb](cluster, target, name, say)


def table_rows(rows: list[dict]) -> list[dict]:
    """The rows as `snapshots` shows them (--json has the VMs' names and the bytes too)."""
    return [{key: value for key, value in row.items() if key not in ("vm_names", "bytes")} for row in rows]
