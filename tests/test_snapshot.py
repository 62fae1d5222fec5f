"""Whole-cluster snapshots with real qemu (TCG), real guests (the tiny image), real SSH:
live and stopped, all VMs or none, and every refusal leaving the cluster as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, kill_recorded_qemus, ls_rows, make_up, run_invoke, stop_vde_switch, wait_for
from tinyimage.cluster import write_cluster

pytestmark = pytest.mark.e2e

ROLES = "  - {name: node, count: 3, vcpus: 1, memory: 256M}\n"
NAMES = ["node0", "node1", "node2"]


def ssh(state: Path, vm: str, command: str) -> str:
    done = subprocess.run(
        ["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", vm, command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"{vm}: {command}: {done.stderr}"
    return done.stdout.strip()


def snapshots_held(image: Path) -> list[str]:
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(image)], capture_output=True, check=True).stdout)
    return [entry["name"] for entry in info.get("snapshots", [])]


def listed(config: Path, env: dict) -> list[dict]:
    return json.loads(run_invoke("snapshots", "--json", "--config", str(config), env=env, check=True).stdout)


def refused(config: Path, env: dict, *args: str) -> str:
    """A refused snapshot command's one line."""
    done = run_invoke("snapshot", *args, "--config", str(config), env=env)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubenet: error: "), done.stderr
    return lines[0]


def guest_clock_error(state: Path, vm: str) -> float:
    """How far the guest's clock is from the host's, in seconds, to the microsecond.

    Busybox's date has no %N; its adjtimex applet, called without options, only reads
    the clock and tells it to the microsecond."""
    before = time.time()
    told = ssh(state, vm, "busybox adjtimex")
    after = time.time()
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in told.splitlines())}
    guest = int(fields["time.tv_sec"]) + int(fields["time.tv_usec"]) / 1e6
    return 0.0 if before <= guest <= after else min(abs(guest - before), abs(guest - after))


def test_a_live_snapshot_brings_back_every_vms_files_processes_and_the_hosts_time(tiny_image, short_dir, tmux_server):
    config = write_cluster(short_dir, *tiny_image, roles=ROLES, count=3)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        make_up(config, env)
        counters = {}
        for vm in NAMES:
            ssh(state, vm, f"echo saved on {vm} > note")
            counters[vm] = ssh(state, vm, "setsid sh -c 'while :; do date +%s >> count; sleep 1; done' </dev/null >/dev/null 2>&1 & echo $!")

        saved = run_invoke("snapshot", "save", "stage-1", "--config", str(config), env=env, check=True)
        assert "kubenet: saved snapshot stage-1 of 3 VMs (live)" in saved.stderr
        assert "ms apart" in saved.stderr  # how long the VMs were paused, and how close together
        [row] = listed(config, env)
        assert (row["name"], row["kind"], row["vms"], row["vm_names"], row["state"]) == ("stage-1", "live", 3, NAMES, "ready")
        assert row["bytes"] > 0  # the VMs' memory
        assert all(snapshots_held(state / vm / "disk.img") == ["stage-1"] for vm in NAMES)

        for vm in NAMES:
            ssh(state, vm, f"echo changed > note; kill {counters[vm]}")
        time.sleep(3)  # long enough for a clock left at the snapshot's moment to show
        restored = run_invoke("snapshot", "restore", "stage-1", "--config", str(config), env=env, check=True)
        assert "kubenet: restored snapshot stage-1 of 3 VMs" in restored.stderr
        for vm in NAMES:
            assert ssh(state, vm, "cat note") == f"saved on {vm}"
            assert ssh(state, vm, f"kill -0 {counters[vm]} && echo alive") == "alive"  # the process from before the save
            assert guest_clock_error(state, vm) <= 1.0, vm
        assert "1 packets transmitted, 1 received" in ssh(state, "node0", "ping -c 1 -W 5 node1 && ping -c 1 -W 5 node2")
        assert "1 packets transmitted, 1 received" in ssh(state, "node2", "ping -c 1 -W 5 node0")

        # refusals: one line each, and nothing changed
        assert "a snapshot named 'stage-1' exists" in refused(config, env, "save", "stage-1")
        assert "no snapshot named 'nope' of cluster kt; snapshots: stage-1" in refused(config, env, "restore", "nope")
        assert "snapshot name 'a/b' is not allowed" in refused(config, env, "save", "a/b")
        run_invoke("stop", "--name", "node2", "--config", str(config), env=env, check=True)
        mixed = refused(config, env, "save", "half")
        assert "node0 node1 running, node2 stopped" in mixed and "`make up`" in mixed and "`invoke down`" in mixed
        assert "node0 node1 running, node2 stopped" in refused(config, env, "restore", "stage-1")
        assert [row["name"] for row in listed(config, env)] == ["stage-1"]

        # node2 booted afresh: the snapshot takes it back to the saved moment as well
        make_up(config, env)
        run_invoke("snapshot", "restore", "stage-1", "--config", str(config), env=env, check=True)
        assert ssh(state, "node2", f"cat note; kill -0 {counters['node2']} && echo alive").splitlines() == ["saved on node2", "alive"]

        # a changed machine is named, and refused
        original = config.read_text()
        config.write_text(original.replace("memory: 256M", "memory: 320M"))
        assert "node0's machine changed since: `-m 256M` is now `-m 320M`" in refused(config, env, "restore", "stage-1")
        config.write_text(original)

        removed = run_invoke("snapshot", "rm", "stage-1", "--config", str(config), env=env, check=True)
        assert "kubenet: removed snapshot stage-1" in removed.stderr
        assert listed(config, env) == []
        assert all(snapshots_held(state / vm / "disk.img") == [] for vm in NAMES)
        assert all(row["state"] == "running" for row in ls_rows(config, env))

        run_invoke("down", "--config", str(config), env=env, check=True)
        for vm in NAMES:
            check = subprocess.run(["qemu-img", "check", str(state / vm / "disk.img")], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_a_guest_without_an_agent_has_its_clock_set_over_ssh_and_a_right_clock_is_no_failure(tiny_image, short_dir, tmux_server):
    config = write_cluster(short_dir, *tiny_image, roles="  - {name: node, count: 2, vcpus: 1, memory: 256M}\n", count=2)
    config.write_text(config.read_text() + "user: root\n")  # the test image has no sudo: its root logs in
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        make_up(config, env)
        ssh(state, "node1", "kill $(cat /run/qemu-ga.pid)")  # node1's guest runs no agent from now on
        saved = run_invoke("snapshot", "save", "s1", "--config", str(config), env=env, check=True)
        assert "kubenet: node1: no guest agent runs; its clock was set over SSH" in saved.stderr, saved.stderr
        assert "node0: no guest agent" not in saved.stderr and "did not answer" not in saved.stderr  # no wait for an agent that is not there
        time.sleep(3)  # long enough for a clock left at the snapshot's moment to show
        restored = run_invoke("snapshot", "restore", "s1", "--config", str(config), env=env)
        assert restored.returncode == 0, restored.stderr  # the clocks are right: no failure is claimed
        assert "kubenet: node1: no guest agent runs; its clock was set over SSH" in restored.stderr
        assert "did not answer" not in restored.stderr and "off the host's" not in restored.stderr
        for vm in NAMES[:2]:
            assert guest_clock_error(state, vm) <= 1.0, vm
    finally:
        run_invoke("down", "--config", str(config), env=env)
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_a_stopped_snapshot_rolls_the_disks_back_for_the_next_up(tiny_image, short_dir, tmux_server):
    config = write_cluster(short_dir, *tiny_image, roles="  - {name: node, count: 2, vcpus: 1, memory: 256M}\n", count=2)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    disks = [state / vm / "disk.img" for vm in NAMES[:2]]
    try:
        make_up(config, env)
        run_invoke("down", "--config", str(config), env=env, check=True)
        before = [subprocess.run(["qemu-img", "map", "--output=json", str(disk)], capture_output=True, check=True).stdout for disk in disks]
        saved = run_invoke("snapshot", "save", "cold", "--config", str(config), env=env, check=True)
        assert "kubenet: saved snapshot cold of 2 VMs (stopped)" in saved.stderr
        assert [(row["name"], row["kind"]) for row in listed(config, env)] == [("cold", "stopped")]

        # the tiny guest keeps no files on its disk: write to the disks as a guest would
        for disk in disks:
            subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 1M", str(disk)], capture_output=True, check=True)
        make_up(config, env)
        line = refused(config, env, "restore", "cold")
        assert "cold is a snapshot of the stopped cluster" in line and "`invoke down` first" in line
        run_invoke("down", "--config", str(config), env=env, check=True)

        restored = run_invoke("snapshot", "restore", "cold", "--config", str(config), env=env, check=True)
        assert "`make up` boots them from there" in restored.stderr
        after = [subprocess.run(["qemu-img", "map", "--output=json", str(disk)], capture_output=True, check=True).stdout for disk in disks]
        assert after == before  # the written megabyte is gone
        up = make_up(config, env)
        assert "kubenet: 2 of 2 VMs ready: node0 node1" in up.stderr
        live = refused(config, env, "save", "cold")
        assert "exists" in live
        run_invoke("down", "--config", str(config), env=env, check=True)
        for disk in disks:
            assert subprocess.run(["qemu-img", "check", str(disk)], capture_output=True).returncode == 0

        # a reset VM's part of the snapshot is gone with its disk: said, then refused by name
        reset = run_invoke("reset", "--name", "node1", "--yes", "--config", str(config), env=env, check=True)
        assert "kubenet: snapshots cold can no longer be restored" in reset.stderr
        assert "node1's disk.img no longer holds it" in refused(config, env, "restore", "cold")
        # destroy takes snapshots with it only when asked to
        kept = run_invoke("destroy", "--yes", "--config", str(config), env=env)
        assert kept.returncode == 1 and "has 1 snapshot (cold), which live in its disks; nothing was destroyed" in kept.stderr
        assert "`invoke destroy --snapshots`" in kept.stderr and disks[0].exists()
        run_invoke("destroy", "--yes", "--snapshots", "--config", str(config), env=env, check=True)
        assert not state.exists()
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def written_since(path: Path, before: os.stat_result) -> bool:
    # the tiny guest never writes its disk: a change is the save's. The size alone is not
    # enough: a second save first fills the clusters a first one cut short gave back
    now = path.stat()
    return (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


def test_a_vm_lost_during_a_save_leaves_it_nowhere_and_a_killed_save_is_undone_by_the_next_up(tiny_image, short_dir, tmux_server):
    roles = "  - {name: big, vcpus: 1, memory: 1G}\n  - {name: node, count: 2, vcpus: 1, memory: 256M}\n"
    config = write_cluster(short_dir, *tiny_image, roles=roles, count=3)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    names = ["big", "node0", "node1"]
    big_disk = state / "big" / "disk.img"

    def save_in_background(name: str) -> subprocess.Popen:
        # big's memory filled with what cannot be compressed: its save takes long enough to be cut
        ssh(state, "big", "rm -f fill; dd if=/dev/urandom of=fill bs=1M count=400 2>/dev/null")
        before = big_disk.stat()
        saving = subprocess.Popen(
            [str(INVOKE), "--search-root", str(ROOT), "snapshot", "save", name, "--config", str(config)],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert wait_for(lambda: written_since(big_disk, before), timeout=60, interval=0.005), "big's save never began"
        return saving

    try:
        make_up(config, env)
        # 1. big's qemu dies while it saves: no VM keeps the snapshot, the others run on
        # its pid first: `ls` while the VMs are paused waits for their QMP, and the save may end meanwhile
        big_pid = next(row["pid"] for row in ls_rows(config, env) if row["name"] == "big")
        saving = save_in_background("lost")
        os.kill(big_pid, signal.SIGKILL)
        _, stderr = saving.communicate(timeout=300)
        assert saving.returncode == 1, stderr
        [line] = stderr.strip().splitlines()[-1:]
        assert line.startswith("kubenet: error: snapshot lost not saved: big: ") and "no VM keeps it, and every VM runs on" in line, stderr
        assert listed(config, env) == []
        assert all(snapshots_held(state / vm / "disk.img") == [] for vm in names)
        assert {row["name"]: row["state"] for row in ls_rows(config, env)} == {"big": "stopped", "node0": "running", "node1": "running"}
        for vm in ("node0", "node1"):
            assert ssh(state, vm, "hostname") == vm
        assert subprocess.run(["qemu-img", "check", str(big_disk)], capture_output=True).returncode == 0  # its leaks given back

        # 2. the save itself is killed: the VMs stay paused until the next `up` undoes it
        make_up(config, env)
        saving = save_in_background("cut")
        saving.send_signal(signal.SIGKILL)
        saving.communicate(timeout=30)
        assert [(row["name"], row["state"]) for row in listed(config, env)] == [("cut", "interrupted")]
        up = make_up(config, env)
        assert "kubenet: snapshot cut's save was cut short: removed what it left, and its VMs run again" in up.stderr
        assert listed(config, env) == []
        assert all(snapshots_held(state / vm / "disk.img") == [] for vm in names)
        for vm in names:
            assert ssh(state, vm, "hostname") == vm
        # what the cut save may have left taken in the images is given back once each qemu is gone
        assert all((state / vm / "repair-leaks").is_file() for vm in names)
        run_invoke("down", "--config", str(config), env=env, check=True)
        for vm in names:
            assert not (state / vm / "repair-leaks").exists()
            assert subprocess.run(["qemu-img", "check", str(state / vm / "disk.img")], capture_output=True).returncode == 0
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


# ---- a snapshot command killed part-way: all VMs or none, also then --------------------------


def hanging(short_dir: Path, env: dict, image_part: str) -> tuple[dict, Path]:
    """The environment in which qemu-img stops, as if killed part-way, on images whose path holds
    `image_part` (tests/stubs/qemu-img-hang), and the file it writes when it does."""
    import shutil

    bin_dir = short_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "qemu-img").exists():
        (bin_dir / "qemu-img").symlink_to(Path(__file__).parent / "stubs" / "qemu-img-hang")
    mark = short_dir / "hung"
    mark.unlink(missing_ok=True)
    return {**env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_QEMU_IMG": shutil.which("qemu-img"),
            "STUB_HANG_ON": image_part, "STUB_HANG_ON_MARK": str(mark)}, mark  # fmt: skip


def killed_when_hung(args: list[str], config: Path, env: dict, mark: Path) -> None:
    """Run `invoke ARGS`, and SIGKILL it (and the hung qemu-img) once qemu-img hangs."""
    command = subprocess.Popen([str(INVOKE), "--search-root", str(ROOT), *args, "--config", str(config)],
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(mark.exists, timeout=120), "qemu-img never reached the image it hangs on"
    finally:
        command.kill()
        command.wait()
        if mark.exists():
            os.kill(int(mark.read_text()), signal.SIGKILL)  # the stand-in this test started, by its pid


def test_a_stopped_restore_or_save_killed_part_way_is_finished_or_undone_by_the_next_command(tiny_image, short_dir, tmux_server):
    config = write_cluster(short_dir, *tiny_image, roles="  - {name: node, count: 2, vcpus: 1, memory: 256M}\n", count=2)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    disks = [state / vm / "disk.img" for vm in NAMES[:2]]

    def write(pattern: str) -> None:  # the tiny guest keeps no files on its disk: write as a guest would
        for disk in disks:
            subprocess.run(["qemu-io", "-c", f"write -P {pattern} 0 1M", str(disk)], capture_output=True, check=True)

    def holding(pattern: str) -> list[bool]:
        return [subprocess.run(["qemu-io", "-c", f"read -P {pattern} 0 1M", str(disk)], capture_output=True, text=True).stdout.count("Pattern verification failed") == 0
                for disk in disks]  # fmt: skip

    try:
        run_invoke("vmsetup", "--config", str(config), env=env, check=True)
        write("0x11")
        run_invoke("snapshot", "save", "cold", "--config", str(config), env=env, check=True)
        write("0x22")

        # 4. the restore is killed with node0's disk rolled back and node1's not
        stand_in, mark = hanging(short_dir, env, "/node1/")
        killed_when_hung(["snapshot", "restore", "cold"], config, stand_in, mark)
        assert [row["state"] for row in listed(config, env)] == ["restoring"]
        assert "kubenet: snapshot cold's restore was cut short: `make up` finishes it" in run_invoke("ls", "--config", str(config), env=env, check=True).stderr
        assert holding("0x11") == [True, False]  # half restored
        up = make_up(config, env)  # never boots the half-restored cluster: it finishes the restore first
        assert "kubenet: snapshot cold's restore was cut short: finished it; every VM is back at cold (on disk)" in up.stderr, up.stderr
        assert [row["state"] for row in listed(config, env)] == ["ready"]
        run_invoke("down", "--config", str(config), env=env, check=True)
        assert holding("0x11") == [True, True]

        # 6. a save killed after node1's qemu-img made its tag and left a leak, as a killed one does
        stand_in, mark = hanging(short_dir, env, "/node1/")
        killed_when_hung(["snapshot", "save", "warm"], config, stand_in, mark)
        assert "leaked" in subprocess.run(["qemu-img", "check", str(disks[1])], capture_output=True, text=True).stdout
        run_invoke("snapshot", "save", "other", "--config", str(config), env=env, check=True)  # the next command undoes it
        assert [row["name"] for row in listed(config, env)] == ["cold", "other"]
        for disk in disks:
            check = subprocess.run(["qemu-img", "check", str(disk)], capture_output=True, text=True)
            assert check.returncode == 0 and "leaked" not in check.stdout, check.stdout + check.stderr
            assert snapshots_held(disk) == ["cold", "other"]
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_a_live_restore_killed_part_way_is_finished_by_up_and_no_vm_is_left_paused(tiny_image, short_dir, tmux_server):
    config = write_cluster(short_dir, *tiny_image, roles="  - {name: node, count: 2, vcpus: 1, memory: 256M}\n", count=2)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        make_up(config, env)
        for vm in NAMES[:2]:
            ssh(state, vm, "echo saved > note")
        run_invoke("snapshot", "save", "live1", "--config", str(config), env=env, check=True)
        for vm in NAMES[:2]:
            ssh(state, vm, "echo changed > note")
        record = state / "snapshots" / "live1.json"
        restore = subprocess.Popen([str(INVOKE), "--search-root", str(ROOT), "snapshot", "restore", "live1", "--config", str(config)],
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            assert wait_for(lambda: json.loads(record.read_text()).get("restoring"), timeout=60, interval=0.01)
            time.sleep(0.3)  # into its work: the VMs paused, their memory loading
        finally:
            restore.kill()
            restore.wait()
        listing = run_invoke("ls", "--config", str(config), env=env, check=True)
        assert "kubenet: snapshot live1's restore was cut short: `make up` finishes it" in listing.stderr
        up = run_invoke("up", "--config", str(config), env=env, check=True)
        assert "kubenet: snapshot live1's restore was cut short: finished it; every VM is back at live1" in up.stderr, up.stderr
        assert [row["state"] for row in ls_rows(config, env)] == ["running", "running"]  # none left paused
        assert [ssh(state, vm, "cat note") for vm in NAMES[:2]] == ["saved", "saved"]
        assert [row["state"] for row in listed(config, env)] == ["ready"]
        run_invoke("down", "--config", str(config), env=env, check=True)
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
