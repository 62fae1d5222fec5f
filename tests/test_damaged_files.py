"""Damaged files (trust, second round, item 16): a truncated disk or a variable store of the
wrong size is found before qemu is given it, named, and met with a fix that keeps the data;
with the real qemu-img and qemu-io, the library's setup and the real invoke with a stub qemu."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import blank_disk, image_bytes, kill_recorded_qemus, run_invoke, stop_vde_switch
from kubenet.plumbing import errors
from kubenet.prepare.imagecheck import qcow2_problem, qemu_img_check
from kubenet.model.paths import vm_paths
from kubenet.prepare.vmsetup import setup_vm
from test_tmux import write_cluster
from test_vmsetup import context_for, project  # noqa: F401 (a fixture)


def written_disk(path: Path) -> Path:
    """A qcow2 image holding 4 MiB of data, as a VM's disk after some use."""
    blank_disk(path)
    subprocess.run(["qemu-io", "-c", "write -P 0xab 0 4M", str(path)], check=True, capture_output=True)
    return path


def test_a_whole_disk_passes_and_a_truncated_one_is_found_as_qemu_img_finds_it(tmp_path):
    disk = written_disk(tmp_path / "disk.img")
    assert qcow2_problem(disk) is None and qemu_img_check(disk) is None
    os.truncate(disk, disk.stat().st_size // 2)
    assert qcow2_problem(disk).startswith("is truncated: data at ")
    assert "corruptions" in qemu_img_check(disk)
    os.truncate(disk, 100_000)
    assert qcow2_problem(disk).startswith("is truncated: its refcount table ends past the file's 100000 bytes")
    (tmp_path / "other").write_bytes(b"not an image at all, but long enough to hold a qcow2 header" * 4)
    assert qcow2_problem(tmp_path / "other") == "is not a qcow2 image"
    assert qcow2_problem(tmp_path / "missing") == "cannot be read (No such file or directory)"


def test_setup_names_a_truncated_disk_and_keeps_it(project):  # noqa: F811
    cluster, target = context_for(project)
    vm = cluster.vms[0]
    setup_vm(cluster, target, vm, say=lambda _: None)
    disk = vm_paths(cluster, vm).disk
    subprocess.run(["qemu-io", "-c", "write -P 0xcd 0 2M", str(disk)], check=True, capture_output=True)
    os.truncate(disk, disk.stat().st_size - 65536)
    kept = disk.read_bytes()
    with pytest.raises(errors.SetupError) as raised:
        setup_vm(cluster, target, vm, say=lambda _: None)
    assert str(raised.value).startswith(f"control0: {disk} is truncated")
    assert f"qemu-img check -r all {disk}" in raised.value.hint
    assert disk.read_bytes() == kept  # never replaced


def test_setup_sets_a_variable_store_of_the_wrong_size_aside_and_keeps_the_disk(project):  # noqa: F811
    cluster, target = context_for(project)
    vm = cluster.vms[0]
    setup_vm(cluster, target, vm, say=lambda _: None)
    paths = vm_paths(cluster, vm)
    disk = paths.disk.stat().st_ino
    paths.efivars.write_bytes(b"\1" * 1000)
    said = []
    setup_vm(cluster, target, vm, say=said.append)
    assert f"control0: {paths.efivars} is 1000 bytes; the firmware's variable store is 4096: moved it to efivars.qcow2.damaged" in said
    assert image_bytes(paths.efivars) == b"\0" * 4096  # a new store from the template
    assert (paths.dir / "efivars.qcow2.damaged").read_bytes() == b"\1" * 1000  # what it held is kept
    assert paths.disk.stat().st_ino == disk


def test_up_refuses_a_truncated_disk_before_any_qemu_starts(short_dir, stub_env):
    config = write_cluster(short_dir, "  - {name: node, count: 2, memory: 128M}\n")
    state = short_dir / ".kubenet"
    disk = written_disk(state / "node1" / "disk.img")
    os.truncate(disk, disk.stat().st_size // 2)
    try:
        done = run_invoke("up", "--no-wait", "--config", str(config), env=stub_env)
        assert done.returncode == 1
        last = done.stderr.splitlines()[-1]
        assert last.startswith(f"kubenet: error: node1: {disk} is truncated: data at "), done.stderr
        assert f"(hint: repair what can be kept with `qemu-img check -r all {disk}` (keep a copy first)" in last
        assert "started" not in done.stderr and not list(state.glob("*/qemu.pid"))
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
