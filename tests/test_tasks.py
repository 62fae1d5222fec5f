"""The tasks as a user runs them: real `invoke` processes, stdout for data, one-line errors."""

import json
import shlex

import pytest

from conftest import ROOT, blank_disk, run_invoke

NAMES = ["gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2"]


def test_list_shows_every_task_with_help():
    done = run_invoke("--list", check=True)
    for name in ("argv", "ls", "vm"):
        assert f"\n  {name} " in done.stdout


def test_ls_json_is_a_json_array_of_the_tutorials_vms():
    done = run_invoke("ls", "--json", "--config", str(ROOT / "cluster.yaml"), env={"KUBENET_ACCEL": "tcg"}, check=True)
    rows = json.loads(done.stdout)
    assert [row["name"] for row in rows] == NAMES
    assert rows[5] | {"ssh": None} == {
        "id": 5, "name": "worker1", "role": "worker", "vcpus": 4, "memory": "4G", "rss": None,
        "mac": "52:52:52:00:00:05", "ip": "192.168.1.15", "ssh": None,
        "state": "stopped", "pid": None, "ready": None, "exited": None, "cluster_net": None, "orphaned": False,
    }  # fmt: skip
    assert done.stderr == ""


def test_ls_names_and_table(cluster_file):
    path = cluster_file("roles:\n  - {name: control, count: 2}\n  - {name: worker, count: 5}\nnetwork: {mode: user}\n")
    assert run_invoke("ls", "--names", "--config", str(path), check=True).stdout.split() == [
        "control0", "control1", "worker0", "worker1", "worker2", "worker3", "worker4",
    ]  # fmt: skip
    table = run_invoke("ls", env={"KUBENET_CONFIG": str(path)}, check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "ROLE", "VCPUS", "MEMORY", "HELD", "MAC", "IP", "SSH", "STATE", "PID", "READY"]
    assert table[3].split() == ["2", "worker0", "worker", "2", "2G", "-", "52:52:52:00:00:02", "192.168.1.12", "127.0.0.1:2202", "stopped", "-", "-"]


@pytest.mark.parametrize("vmid", range(7))
def test_argv_for_macos_is_the_tutorials_command(vmid):
    done = run_invoke("argv", "--id", str(vmid), "--host", "darwin-arm64", check=True)
    vmdir = ROOT / ".kubenet" / NAMES[vmid]
    vcpus, memory = ("4", "4G") if vmid >= 4 else ("2", "2G")
    assert shlex.split(done.stdout) == [
        "qemu-system-aarch64", "-nographic", "-machine", "virt,accel=hvf,highmem=on", "-cpu", "host",
        "-smp", vcpus, "-m", memory, "-bios", "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
        "-nic", f"vmnet-shared,start-address=192.168.1.1,end-address=192.168.1.20,subnet-mask=255.255.255.0,mac=52:52:52:00:00:0{vmid}",
        "-hda", f"{vmdir}/disk.img", "-drive", f"file={vmdir}/cidata.iso,driver=raw,if=virtio",
    ]  # fmt: skip
    assert len(done.stdout.splitlines()) == 1


def test_argv_by_name_with_accel_for_another_host():
    done = run_invoke("argv", "--name", "worker1", "--host", "linux-aarch64", "--accel", "tcg", check=True)
    argv = shlex.split(done.stdout)
    assert argv[:8] == ["qemu-system-aarch64", "-nographic", "-machine", "virt,highmem=on", "-accel", "tcg,tb-size=256", "-cpu", "max"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (("argv", "--id", "9"), "kubenet: error: no VM with id '9' in cluster.yaml; ids are 0-6 (hint: `invoke ls` lists the VMs)"),
        (("argv", "--id", "abc"), "kubenet: error: no VM with id 'abc' in cluster.yaml; ids are 0-6 (hint: `invoke ls` lists the VMs)"),
        (("argv", "--name", "worker9"), "kubenet: error: no VM named 'worker9' in cluster.yaml; names are gateway, control0, control1, control2, worker0, worker1, worker2 (hint: `invoke ls` lists the VMs)"),
        (("argv",), "kubenet: error: give a VM with --id N or --name NAME (hint: ids are 0-6; `invoke ls` lists them)"),
        (("argv", "--id", "1", "--host", "beos"), "kubenet: error: unknown host kind 'beos'; allowed: darwin-arm64, linux-x86_64, linux-aarch64 (hint: leave out --host for this machine)"),
        (("ls", "--config", "missing.yaml"), "kubenet: error: missing.yaml: no such cluster file (hint: run from the directory holding cluster.yaml, or pass --config PATH / set KUBENET_CONFIG)"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, expected):
    done = run_invoke(*args, env={"KUBENET_ACCEL": "tcg"})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == expected


def test_a_broken_cluster_file_is_one_line_with_no_traceback(cluster_file):
    path = cluster_file("roles:\n  - {name: worker, count: 3, memory: 4X}\n")
    done = run_invoke("ls", "--config", str(path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"kubenet: error: {path}: roles[0].memory: '4X' is not allowed; allowed: a whole number with a unit K, M, G or T, e.g. 4G"
    )


def test_vm_refuses_to_boot_a_kernel_that_is_missing(cluster_file):
    path = cluster_file("network: {mode: user}\nimage: {kind: kernel, kernel: k, initrd: i}\n")
    done = run_invoke("vm", "--id", "5", "--config", str(path), env={"KUBENET_ACCEL": "tcg"})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"kubenet: error: {path}: image.kernel: {path.parent}/k does not exist (hint: point image.kernel at your kernel file)"
    )


def test_vm_refuses_to_start_a_vm_that_is_not_set_up(cluster_file):
    path = cluster_file("network: {mode: user}\nimage: {kind: kernel, kernel: k, initrd: i}\n")
    (path.parent / "k").touch()
    (path.parent / "i").touch()
    done = run_invoke("vm", "--id", "5", "--config", str(path), env={"KUBENET_ACCEL": "tcg"})
    assert done.returncode == 1
    vmdir = path.parent / ".kubenet/worker1"
    assert done.stderr.strip() == (
        f"kubenet: error: worker1 is not set up: missing {vmdir}/disk.img, {vmdir}/cidata.iso"
        " (hint: run `make setup` or `invoke vmsetup --id 5`)"
    )


def test_vm_replaces_itself_with_qemu_and_starts_the_vde_switch(cluster_file, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    stub = tmp_path / "qemu-stub"
    stub.write_text('#!/bin/sh\necho "pid=$$"\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    path = cluster_file("network: {mode: user}\nimage: {kind: kernel, kernel: k, initrd: i}\n")
    (tmp_path / "k").touch()
    (tmp_path / "i").touch()
    vmdir = tmp_path / ".kubenet/worker1"
    vmdir.mkdir(parents=True)
    blank_disk(vmdir / "disk.img")
    (vmdir / "cidata.iso").write_bytes(b"")
    env = {**os.environ, "KUBENET_QEMU": str(stub), "KUBENET_ACCEL": "tcg"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "invoke"), "--search-root", str(ROOT), "vm", "--name", "worker1", "--config", str(path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == f"pid={process.pid}"  # exec: the same process became qemu
        assert lines[1:11] == ["-nographic", "-machine", "q35", "-accel", "tcg,tb-size=256", "-cpu", "max", "-smp", "4", "-m"]
        assert (tmp_path / ".kubenet/vde.ctl/ctl").exists()
    finally:
        pid_file = tmp_path / ".kubenet/vde.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_ssh_replaces_itself_with_an_interactive_ssh_through_the_generated_config(cluster_file, tmp_path):
    import os

    path = cluster_file("network: {mode: user}\n")
    missing = run_invoke("ssh", "--name", "worker1", "--config", str(path))
    assert (missing.returncode, missing.stderr.strip()) == (
        1, f"kubenet: error: {tmp_path}/.kubenet/ssh_config does not exist (hint: run `make up` (or `make setup`) first)"
    )  # fmt: skip
    (tmp_path / ".kubenet").mkdir()
    (tmp_path / ".kubenet/ssh_config").write_text("Host worker1\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    done = run_invoke("ssh", "--name", "worker1", "--config", str(path), env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=True)
    assert done.stdout == f"-F {tmp_path}/.kubenet/ssh_config worker1\n"
