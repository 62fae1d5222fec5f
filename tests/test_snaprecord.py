"""The pure parts of snapshots: names, what changed since, which drives hold a snapshot, the records."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubenet.model.cluster import Cluster
from kubenet.snapshots.snaprecord import Record, SnapshotError, check_name, cluster_change, find_record, machine_change, read_records, write_record
from kubenet.snapshots.snapjobs import pause_figures, snapshot_drives


@pytest.mark.parametrize("name", ["stage-5", "ch4.certs", "before_surgery", "A1"])
def test_names_of_letters_digits_and_dot_dash_underscore_are_allowed(name):
    check_name(name)


@pytest.mark.parametrize(
    "name, said",
    [
        ("a b", "is not allowed"),
        ("a/b", "is not allowed"),
        ("", "is not allowed"),
        ("x" * 65, "is not allowed"),
        ("12", "only digits, which qemu would take for a snapshot's number"),
        ("-x", "starts with '-'"),
        (".x", "starts with '.'"),
    ],
)
def test_other_names_are_refused_with_what_is_allowed(name, said):
    with pytest.raises(SnapshotError) as refused:
        check_name(name)
    assert said in str(refused.value)


MACHINE = ["qemu-system-x86_64", "-nographic", "-machine", "q35,accel=tcg", "-m", "256M", "-device", "virtio-rng-pci,addr=0x1e"]


def test_a_changed_machine_is_named_by_the_option_that_changed():
    assert machine_change(MACHINE, MACHINE) is None
    assert machine_change(MACHINE, [*MACHINE[:5], "512M", *MACHINE[6:]]) == "`-m 256M` is now `-m 512M`"
    assert machine_change(MACHINE, [*MACHINE, "-device", "e1000"]) == "it gained `-device e1000`"
    assert machine_change(MACHINE, MACHINE[:-2]) == "it lost `-device virtio-rng-pci,addr=0x1e`"


def test_vms_added_or_removed_since_are_named():
    record = Record("s", True, {"node0": {"machine": MACHINE, "images": []}, "node1": {"machine": MACHINE, "images": []}})
    assert cluster_change(record, {"node0": MACHINE, "node1": MACHINE}) is None
    assert cluster_change(record, {"node0": MACHINE, "node1": MACHINE, "node2": MACHINE}) == "the cluster's VMs changed since: added node2"
    assert cluster_change(record, {"node0": MACHINE}) == "the cluster's VMs changed since: removed node1"


def block(device: str, file: str, drv: str = "qcow2", ro: bool = False) -> dict:
    return {"device": device, "inserted": {"node-name": f"#{device}", "file": file, "drv": drv, "ro": ro}}


def test_a_snapshot_goes_to_every_writable_drive_and_the_memory_to_the_disk():
    disk = Path("/s/node0/disk.img")
    blocks = [
        block("pflash0", "/usr/share/OVMF/OVMF_CODE_4M.fd", "raw", ro=True),
        block("pflash1", "/s/node0/efivars.qcow2"),
        block("disk", str(disk)),
        block("virtio0", "/s/node0/cidata.iso", "raw", ro=True),
        {"device": "ide2-cd0"},  # an empty drive
    ]
    drives = snapshot_drives(blocks, "node0", disk)
    assert (drives.vmstate, drives.nodes, drives.images) == ("#disk", ["#pflash1", "#disk"], ["/s/node0/efivars.qcow2", str(disk)])


def test_a_writable_raw_drive_is_refused_before_anything_is_paused():
    blocks = [block("disk", "/s/node0/disk.img"), block("virtio1", "/data/scratch.img", "raw")]
    with pytest.raises(SnapshotError) as refused:
        snapshot_drives(blocks, "node0", Path("/s/node0/disk.img"))
    assert "node0: its drive virtio1 (raw, /data/scratch.img) cannot hold a snapshot" in str(refused.value)
    assert "readonly=on" in refused.value.hint


def test_pause_figures_give_the_longest_pause_and_the_spread_of_the_pauses():
    assert pause_figures({"a": (10.0, 12.5), "b": (10.004, 12.5)}) == "paused 2.50 s at most, 4 ms apart"


def test_records_are_kept_and_an_unknown_name_lists_the_known_ones(tmp_path):
    cluster = Cluster(name="kt", state_dir=tmp_path)
    write_record(cluster, Record("older", True, {}, created=1.0))
    write_record(cluster, Record("newer", False, {}, created=2.0))
    assert [(record.name, record.live) for record in read_records(cluster)] == [("older", True), ("newer", False)]
    assert find_record(cluster, "newer").created == 2.0
    with pytest.raises(SnapshotError) as unknown:
        find_record(cluster, "gone")
    assert "no snapshot named 'gone' of cluster kt; snapshots: older, newer" in str(unknown.value)
    assert (tmp_path / "snapshots").stat().st_mode & 0o777 == 0o700


def test_a_record_that_cannot_be_read_is_named(tmp_path):
    cluster = Cluster(name="kt", state_dir=tmp_path)
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "bad.json").write_text("{")
    with pytest.raises(SnapshotError) as unreadable:
        read_records(cluster)
    assert f"snapshot record {tmp_path}/snapshots/bad.json cannot be read" in str(unreadable.value)
