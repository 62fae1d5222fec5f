"""What kubenet knows of each whole-cluster snapshot: a record under state_dir/snapshots.

A snapshot's data lives inside the VMs' qcow2 images (internal snapshots, one tag per
image); its record says what it is of: when it was taken, whether live (memory too)
or of stopped VMs, each VM's images and its qemu command line then, and how far the
save got. Only a `complete` record is restored; a `saving` or `saved` one was left by
a save that did not finish, a `restoring` one by a restore (see snapshot.recover).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..model.cluster import Cluster
from ..model.paths import snapshots_dir
from ..plumbing import errors
from ..plumbing.fsutil import private_dir, write_atomic

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The steps of a save: every VM paused and saving; every VM holds it (resuming); done.
SAVING, SAVED, COMPLETE = "saving", "saved", "complete"


class SnapshotError(errors.KubenetError):
    """A snapshot cannot be taken, restored or removed as asked."""


@dataclass
class Record:
    name: str
    live: bool
    vms: dict[str, dict] = field(default_factory=dict)  # name -> {"images": [...], "machine": [...]}
    step: str = SAVING
    created: float = field(default_factory=time.time)
    restoring: bool = False  # a restore began and has not finished: the next command finishes it

    @property
    def usable(self) -> bool:
        return self.step == COMPLETE


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise SnapshotError(f"snapshot name {name!r} is not allowed", "use letters, digits, '.', '_' and '-' (at most 64)")
    if name.isdigit():
        # qemu finds a snapshot by its number as well as its name
        raise SnapshotError(f"snapshot name {name!r} is only digits, which qemu would take for a snapshot's number", "add a letter, e.g. stage-5")
    if name.startswith((".", "-")):
        raise SnapshotError(f"snapshot name {name!r} starts with {name[0]!r}", "start it with a letter or digit")


def record_path(cluster: Cluster, name: str) -> Path:
    return snapshots_dir(cluster) / f"{name}.json"


def write_record(cluster: Cluster, record: Record) -> None:
    private_dir(snapshots_dir(cluster))
    write_atomic(record_path(cluster, record.name), json.dumps(asdict(record), indent=1).encode())


def remove_record(cluster: Cluster, name: str) -> None:
    record_path(cluster, name).unlink(missing_ok=True)


def read_records(cluster: Cluster) -> list[Record]:
    """Every snapshot's record, oldest first; one that cannot be read is named, never skipped."""
    directory = snapshots_dir(cluster)
    if not directory.is_dir():
        return []
    records = []
    for entry in os.scandir(directory):
        if not entry.name.endswith(".json") or entry.name.startswith("."):
            continue
        try:
            data = json.loads(Path(entry.path).read_text())
            records.append(Record(**{key: data[key] for key in ("name", "live", "vms", "step", "created")}, restoring=bool(data.get("restoring"))))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SnapshotError(f"snapshot record {entry.path} cannot be read ({error})", "remove it if the snapshot is no longer wanted") from None
    return sorted(records, key=lambda record: record.created)


def cut_short_notes(cluster: Cluster, busy: bool) -> list[str]:
    """What `ls` says of snapshot commands that did not finish (read only; `up` acts on them):
    under way while another command holds the cluster (`busy`), else cut short."""
    try:
        records = [record for record in read_records(cluster) if record.restoring or not record.usable]
    except SnapshotError:
        return []
    if busy:
        return [f"kubenet: snapshot {record.name}: {'restore' if record.restoring else 'save'} under way" for record in records]
    return [
        f"kubenet: snapshot {record.name}'s restore was cut short: `make up` finishes it" if record.restoring
        else f"kubenet: snapshot {record.name}'s save was cut short: `make up` undoes what it left"
        for record in records
    ]  # fmt: skip


def recorded_names(cluster: Cluster) -> list[str]:
    """The names of the cluster's snapshots, from their record files alone (read or not)."""
    directory = snapshots_dir(cluster)
    if not directory.is_dir():
        return []
    return sorted(entry.name[: -len(".json")] for entry in os.scandir(directory) if entry.name.endswith(".json") and not entry.name.startswith("."))


def holding(cluster: Cluster, vm_name: str) -> list[str]:
    """The snapshots that the VM's images are part of."""
    return [record.name for record in read_records(cluster) if vm_name in record.vms]


def find_record(cluster: Cluster, name: str) -> Record:
    check_name(name)
    records = read_records(cluster)
    for record in records:
        if record.name == name:
            return record
    known = ", ".join(record.name for record in records) or "none yet"
    raise SnapshotError(f"no snapshot named {name!r} of cluster {cluster.name}; snapshots: {known}", "`invoke snapshots` lists them")


def option_pairs(argv: list[str]) -> list[str]:
    """A qemu command line as its options, each with its value: `-m 256M`."""
    pairs: list[str] = []
    for arg in argv[1:]:
        if arg.startswith("-") or not pairs:
            pairs.append(arg)
        else:
            pairs[-1] += " " + arg
    return pairs


def machine_change(then: list[str], now: list[str]) -> str | None:
    """How a VM's qemu command line differs from the one its snapshot was taken with; None if not."""
    old, new = option_pairs(then), option_pairs(now)
    for before, after in zip(old, new):
        if before != after:
            return f"`{before}` is now `{after}`"
    if len(new) > len(old):
        return f"it gained `{new[len(old)]}`"
    if len(old) > len(new):
        return f"it lost `{old[len(new)]}`"
    return None


def cluster_change(record: Record, machines: dict[str, list[str]]) -> str | None:
    """What changed in the cluster since the snapshot, in words; None if nothing that matters."""
    added = [name for name in machines if name not in record.vms]
    removed = [name for name in record.vms if name not in machines]
    if added or removed:
        said = [f"added {' '.join(added)}" if added else "", f"removed {' '.join(removed)}" if removed else ""]
        return "the cluster's VMs changed since: " + ", ".join(part for part in said if part)
    for name, machine in machines.items():
        change = machine_change(record.vms[name]["machine"], machine)
        if change:
            return f"{name}'s machine changed since: {change}"
    return None


def size_text(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} B"
