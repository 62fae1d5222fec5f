"""The host memory VMs cost: the translation cache bound under TCG, the balloon that gives
back what a guest freed, and what `ls` and the launch warning say of it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import kill_recorded_qemus, ls_rows, make_up, on_vm, run_invoke, stop_vde_switch, wait_for
from kubenet.plumbing import errors
from kubenet.model.cluster import Cluster
from kubenet.model.config import build_cluster
from kubenet.run.hostmemory import held_note, likely_held, memory_text, parse_status_rss, resident_bytes, translation_cache
from kubenet.model.host import host_profile
from kubenet.run.launch import memory_warning
from kubenet.run.qemu import TCG_TB_SIZE_MIB
from kubenet.model.qemuargs import refusal
from kubenet.machine.target import Target
from tinyimage.cluster import write_cluster

MIB, GIB = 1 << 20, 1 << 30


def cluster(**top) -> Cluster:
    return build_cluster({"roles": [{"name": "node", "count": 2, "memory": "1G"}], **top}, Path("/tmp/cluster.yaml"))


def test_the_translation_cache_counts_under_tcg_only_and_cluster_yaml_may_size_it():
    assert translation_cache(cluster(), "tcg") == TCG_TB_SIZE_MIB * MIB
    assert translation_cache(cluster(), "kvm") == translation_cache(cluster(), "hvf") == 0
    assert translation_cache(cluster(tcg_tb_size=64), "tcg") == 64 * MIB
    assert likely_held(cluster(), cluster().vms, "tcg") == 2 * (GIB + TCG_TB_SIZE_MIB * MIB)
    assert likely_held(cluster(), cluster().vms, "kvm") == 2 * GIB


@pytest.mark.parametrize("value", [0, -1, 5000, "big", True])
def test_a_translation_cache_size_out_of_range_is_one_line(value):
    with pytest.raises(errors.ConfigError) as raised:
        cluster(tcg_tb_size=value)
    assert "tcg_tb_size" in str(raised.value) and "\n" not in str(raised.value)


def test_a_balloon_in_qemu_args_is_refused_as_kubenet_has_one():
    refused = refusal(["-device", "virtio-balloon-pci,id=b2"])
    assert (refused.option, refused.why) == ("-device", "redefines the memory balloon (qemu takes one), which kubenet sets")
    assert refusal(["-device", "virtio-tablet-pci"]) is None


def test_the_launch_warning_counts_what_the_qemus_are_likely_to_hold():
    described, _ = host_profile("linux-x86_64")
    c = build_cluster({"roles": [{"name": "node", "count": 3, "memory": "1G"}]}, Path("/tmp/cluster.yaml"))

    def target(memory: int, accel: str) -> Target:
        return Target(host=replace(described, memory=memory), accel=accel, mode="user", root=False)

    # 3 GiB of guests fit in 3.5 GiB under KVM, but not with three caches under TCG
    assert memory_warning(c, target(int(3.5 * GIB), "kvm")) is None
    assert memory_warning(c, target(int(3.5 * GIB), "tcg")) == (
        f"the cluster's VMs are likely to hold {(3 * GIB + 3 * TCG_TB_SIZE_MIB * MIB) / GIB:.1f}G of this machine's memory "
        f"(their 3.0G of memory and 3 TCG translation caches of {TCG_TB_SIZE_MIB}M); it has 3.5G"
    )
    assert memory_warning(c, target(2 * GIB, "kvm")) == "the cluster's VMs are likely to hold 3.0G of this machine's memory (their 3.0G of memory); it has 2.0G"
    assert memory_warning(c, Target(host=described, accel="kvm", mode="user", root=False)) is None  # a host of unknown memory


def test_resident_memory_is_read_from_proc_and_a_gone_process_has_none():
    assert parse_status_rss("Name:\tqemu\nVmRSS:\t  218764 kB\nVmSwap: 0 kB\n") == 218764 * 1024
    assert parse_status_rss("Name:\tkthreadd\n") is None  # a kernel thread has no VmRSS line
    mine = resident_bytes(os.getpid())
    assert mine is not None and 10 * MIB < mine < 4 * GIB
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert resident_bytes(gone.pid) is None


def test_sizes_read_as_qemu_writes_them_and_the_note_sums_running_vms():
    assert [memory_text(size) for size in (412 * MIB, 1536 * MIB, GIB)] == ["412M", "1.5G", "1.0G"]
    rows = [{"memory": "1G", "rss": 300 * MIB}, {"memory": "2G", "rss": 500 * MIB}, {"memory": "4G", "rss": None}]
    assert held_note(rows) == "kubenet: the running VMs' qemus hold 800M of this machine's memory (3.0G given to their guests)"
    assert held_note([{"memory": "1G", "rss": None}]) is None


# ---- real qemu ---------------------------------------------------------------------


@pytest.mark.e2e
def test_dropped_page_cache_goes_back_to_the_host_and_ls_shows_what_each_qemu_holds(tiny_image, short_dir, tmux_server):
    config = write_cluster(short_dir, *tiny_image, roles="  - {name: node, count: 1, vcpus: 1, memory: 1G}\n", count=1)
    config.write_text(config.read_text().replace("disk_size: 64M", "disk_size: 2G"))  # room to read 700 MiB from
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}

    def held() -> int:
        [row] = ls_rows(config, env)
        return row["rss"]

    try:
        make_up(config, env)
        [row] = ls_rows(config, env)
        assert row["rss"] == resident_bytes(row["pid"]) or abs(row["rss"] - resident_bytes(row["pid"])) < 64 * MIB
        listed = run_invoke("ls", "--config", str(config), env=env, check=True)
        header, line = listed.stdout.splitlines()
        assert header.split()[4:6] == ["MEMORY", "HELD"] and line.split()[4] == "1G" and line.split()[5].endswith("M")
        assert "kubenet: the running VMs' qemus hold " in listed.stderr and "(1.0G given to their guests)" in listed.stderr

        idle = held()
        # 700 MiB of the disk into the guest's page cache, kept there while a reader holds the device open
        on_vm(state, "node0", "setsid sh -c 'exec 3</dev/vda; sleep 600' </dev/null >/dev/null 2>&1 & "
                                "dd if=/dev/vda of=/dev/null bs=1M count=700 2>/dev/null", root=True, timeout=300)  # fmt: skip
        cached = int(on_vm(state, "node0", "awk '/^Buffers:|^Cached:/ {kb += $2} END {print kb}' /proc/meminfo", root=True, timeout=300)) * 1024
        assert cached > 600 * MIB, cached
        filled = held()
        assert filled > idle + 600 * MIB, (idle, filled)
        time.sleep(10)
        assert held() > idle + 600 * MIB  # cached pages are in use: nothing is given back while they are

        on_vm(state, "node0", "echo 3 > /proc/sys/vm/drop_caches", root=True, timeout=300)
        assert wait_for(lambda: held() < idle + 100 * MIB, timeout=60, interval=2), (idle, filled, held())
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_ls_json_gives_resident_bytes_and_none_for_a_stopped_vm(cluster_file):
    path = cluster_file("roles:\n  - {name: node, count: 1}\nnetwork: {mode: user}\n")
    [row] = json.loads(run_invoke("ls", "--json", "--config", str(path), check=True).stdout)
    assert row["state"] == "stopped" and row["rss"] is None
