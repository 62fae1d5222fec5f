"""Setting VMs up with the real qemu-img and ssh-keygen, through the library, invoke and make."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, image_bytes, run_invoke
from kubenet.plumbing import errors
from kubenet.prepare import seed
from kubenet.model.config import load_cluster
from kubenet.model.host import Firmware
from kubenet.model.host import Arch, Host
from kubenet.model.paths import known_hosts_path, ssh_config_path, vm_paths
from kubenet.model.cluster import Accel, NetworkMode
from kubenet.prepare.vmsetup import setup_ssh, setup_vm
from kubenet.lifecycle.remove import reset_vm
from kubenet.machine.target import Target


@pytest.fixture
def project(tmp_path):
    """A cluster directory with a small local base image and a login key."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"), "64M"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_test")], check=True)
    (tmp_path / "VARS.fd").write_bytes(b"\0" * 4096)
    (tmp_path / "cluster.yaml").write_text(
        "name: t\nimage: {url: base.qcow2}\nssh_key: id_test.pub\nnetwork: {mode: user}\n"
        "roles:\n  - {name: control, count: 1, memory: 256M}\n  - {name: worker, count: 2, memory: 256M}\n"
    )
    return tmp_path


def context_for(project: Path) -> tuple:
    """The cluster, and the machine it is set up for (its base image is cluster.yaml's)."""
    cluster = load_cluster(project / "cluster.yaml")
    host = Host("linux", Arch.x86_64, "qemu-system-x86_64", firmware=Firmware(project / "CODE.fd", project / "VARS.fd"), bridges=frozenset())
    return cluster, Target(host, Accel.TCG, NetworkMode.USER, root=False)


def test_the_disk_is_an_overlay_with_absolute_backing_path_and_size(project):
    cluster, target = context_for(project)
    vm = cluster.vms[1]
    setup_vm(cluster, target, vm, say=lambda _: None)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vm_paths(cluster, vm).disk)], capture_output=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(project / "base.qcow2")
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 20 * 2**30
    paths = vm_paths(cluster, vm)
    assert image_bytes(paths.efivars) == b"\0" * 4096  # the template, as qcow2
    for path in (paths.disk, paths.efivars, paths.host_key, paths.seed, paths.dir / "user-data"):
        assert path.stat().st_mode & 0o077 == 0, path
    assert paths.dir.stat().st_mode & 0o777 == 0o700


def test_a_raw_variable_store_of_an_earlier_kubenet_is_converted_once_with_its_boot_entries(project):
    cluster, target = context_for(project)
    vm = cluster.vms[0]
    paths = vm_paths(cluster, vm)
    paths.dir.mkdir(parents=True, mode=0o700)
    entries = bytes(range(256)) * 16  # 4096 bytes: the template's size, holding what a firmware wrote
    paths.raw_efivars.write_bytes(entries)
    said = []
    setup_vm(cluster, target, vm, say=said.append)
    assert f"{vm.name}: converted efivars.fd to efivars.qcow2, its boot entries kept" in said
    assert image_bytes(paths.efivars) == entries
    assert not paths.raw_efivars.exists()
    setup_vm(cluster, target, vm, say=said.append)  # once: the next setup keeps the qcow2 store
    assert image_bytes(paths.efivars) == entries


def test_an_existing_disk_is_never_recreated_and_reset_deletes_only_disk_and_efivars(project):
    cluster, target = context_for(project)
    vm = cluster.vms[0]
    messages = []
    setup_vm(cluster, target, vm, say=messages.append)
    paths = vm_paths(cluster, vm)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 1M", str(paths.disk)], check=True, capture_output=True)  # what the VM wrote
    precious = paths.disk.read_bytes()
    setup_vm(cluster, target, vm, say=messages.append)
    assert paths.disk.read_bytes() == precious
    assert f"control0: kept {paths.disk}" in messages
    key = paths.host_key.read_text()
    assert reset_vm(cluster, vm, lambda question: True) == [paths.disk, paths.efivars]
    assert not paths.disk.exists() and paths.seed.exists() and paths.host_key.read_text() == key
    setup_vm(cluster, target, vm, say=lambda _: None)
    assert paths.disk.stat().st_size > 0 and paths.host_key.read_text() == key  # same identity


def test_host_keys_are_pinned_in_known_hosts_and_ssh_config(project):
    cluster, target = context_for(project)
    for vm in cluster.vms:
        setup_vm(cluster, target, vm, say=lambda _: None)
    setup_ssh(cluster, target)
    lines = known_hosts_path(cluster).read_text().splitlines()
    publics = [(vm_paths(cluster, vm).host_key.parent / "ssh_host_ed25519_key.pub").read_text().split()[:2] for vm in cluster.vms]
    assert lines == [f"{vm.name} {kind} {blob}" for vm, (kind, blob) in zip(cluster.vms, publics)]
    config = ssh_config_path(cluster).read_text()
    assert (
        "Host worker1 worker1.kubenet\n"
        "  HostName 127.0.0.1\n"
        "  Port 2202\n"
        "  User ubuntu\n"
        f'  IdentityFile "{project}/id_test"\n'
        f'  UserKnownHostsFile "{project}/.kubenet/known_hosts"\n'
        "  HostKeyAlias worker1\n"
        "  StrictHostKeyChecking yes\n"
        "  CheckHostIP no\n"
    ) in config
    # the same key is in the seed the VM reads
    assert publics[2][1] in (vm_paths(cluster, cluster.vms[2]).dir / "user-data").read_text()
    # ssh itself accepts the file
    parsed = subprocess.run(["ssh", "-G", "-F", str(ssh_config_path(cluster)), "worker1"], capture_output=True, text=True, check=True).stdout
    assert "port 2202" in parsed and "stricthostkeychecking true" in parsed and "hostkeyalias worker1" in parsed


def test_no_login_key_is_a_clear_error(project, monkeypatch, tmp_path):
    (project / "cluster.yaml").write_text("image: {url: base.qcow2}\nnetwork: {mode: user}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    cluster, target = context_for(project)
    with pytest.raises(errors.SetupError) as excinfo:
        setup_vm(cluster, target, cluster.vms[0], parts=("seed",), say=lambda _: None)
    assert str(excinfo.value) == (
        "no SSH public key found (looked for ~/.ssh/id_ed25519.pub and ~/.ssh/id_rsa.pub)"
        " (hint: create one with `ssh-keygen -t ed25519`, or set ssh_key in cluster.yaml)"
    )


def test_an_interrupted_seed_write_keeps_the_old_iso_whole(project, monkeypatch):
    cluster, target = context_for(project)
    vm = cluster.vms[0]
    setup_vm(cluster, target, vm, say=lambda _: None)
    iso = vm_paths(cluster, vm).seed
    before = iso.read_bytes()

    import pycdlib

    def interrupted_write(self, stream, *args, **kwargs):
        stream.write(b"half an ISO")
        raise KeyboardInterrupt

    monkeypatch.setattr(pycdlib.PyCdlib, "write_fp", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        seed.write_seed_iso({"user-data": b"x", "meta-data": b"y", "network-config": b"z"}, iso)
    assert iso.read_bytes() == before
    assert not [p for p in iso.parent.iterdir() if p.name.endswith(".tmp")]


def test_two_setups_of_the_same_vm_at_once(project):
    config = str(project / "cluster.yaml")
    processes = [
        subprocess.Popen([str(Path(os.sys.executable).parent / "invoke"), "--search-root", str(ROOT), "vmsetup", "--id", "1", "--config", config],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    messages = "".join(err for _, err in outputs)
    assert messages.count("worker0: created") == 2  # the disk and the UEFI variables, once each
    assert messages.count("worker0: kept") == 2
    subprocess.run(["qemu-img", "check", "-q", str(project / ".kubenet/worker0/disk.img")], check=True)


def test_reset_task_says_what_it_deletes_and_needs_yes_without_a_terminal(project):
    config = str(project / "cluster.yaml")
    run_invoke("vmsetup", "--name", "worker1", "--config", config, check=True)
    refused = run_invoke("reset", "--name", "worker1", "--config", config)
    assert refused.returncode == 1
    assert "needs confirmation (hint: pass --yes to confirm without a terminal)" in refused.stderr
    assert (project / ".kubenet/worker1/disk.img").exists()
    done = run_invoke("reset", "--name", "worker1", "--config", config, "--yes", check=True)
    assert done.stderr.splitlines() == [
        f"kubenet: deleted {project}/.kubenet/worker1/disk.img",
        f"kubenet: deleted {project}/.kubenet/worker1/efivars.qcow2",
    ]


def test_reset_refuses_a_disk_that_a_qemu_has_open(project):
    """Also a qemu kubenet did not start (no pid file), such as `invoke vm` in another terminal."""
    from kubenet.prepare.disk import disk_in_use

    config = str(project / "cluster.yaml")
    run_invoke("vmsetup", "--name", "worker1", "--disk", "--config", config, check=True)
    disk = project / ".kubenet/worker1/disk.img"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-S", "-display", "none", "-nodefaults",
         "-drive", f"file={disk},if=virtio,format=qcow2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not disk_in_use(disk) and qemu.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert disk_in_use(disk), qemu.stderr.read() if qemu.poll() is not None else "qemu did not lock the disk"
        refused = run_invoke("reset", "--name", "worker1", "--yes", "--config", config)
        assert (refused.returncode, refused.stderr.strip()) == (
            1, "kubenet: error: worker1 is running in a qemu that kubenet did not start (its disk is open), such as `invoke vm`'s"
            " (hint: quit that qemu first: Ctrl-A X in its console, or power the VM off from inside)",
        )  # fmt: skip
        assert disk.exists()
        rows = json.loads(run_invoke("ls", "--json", "--config", config, env={"KUBENET_ACCEL": "tcg"}, check=True).stdout)
        assert [(row["name"], row["state"], row["pid"]) for row in rows][1:] == [("worker0", "stopped", None), ("worker1", "running", None)]
    finally:
        qemu.kill()
        qemu.wait()
    assert not disk_in_use(disk)
    run_invoke("reset", "--name", "worker1", "--yes", "--config", config, check=True)
    assert not disk.exists()


def make(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), f"CONFIG={project / 'cluster.yaml'}", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def mtimes(project: Path) -> dict[str, int]:
    return {str(p.relative_to(project)): p.stat().st_mtime_ns for p in sorted((project / ".kubenet").rglob("*")) if p.is_file()}


def test_make_setup_is_incremental_and_never_rebuilds_a_disk(project):
    first = make(project, "-j4", "setup")
    assert first.returncode == 0, first.stderr
    disks = sorted(p.relative_to(project) for p in project.glob(".kubenet/*/disk.img"))
    assert [str(d) for d in disks] == [".kubenet/control0/disk.img", ".kubenet/worker0/disk.img", ".kubenet/worker1/disk.img"]
    before = mtimes(project)
    second = make(project, "setup")
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")  # nothing made, nothing said
    assert mtimes(project) == before
    time.sleep(0.01)
    config = project / "cluster.yaml"
    config.write_text(config.read_text().replace("name: t\n", "name: t\nuser: kube\n"))
    third = make(project, "setup")
    assert third.returncode == 0, third.stderr
    after = mtimes(project)
    for name in ("control0", "worker0", "worker1"):
        assert after[f".kubenet/{name}/disk.img"] == before[f".kubenet/{name}/disk.img"]
        assert after[f".kubenet/{name}/cidata.iso"] > before[f".kubenet/{name}/cidata.iso"]
        assert "name: kube" in (project / f".kubenet/{name}/user-data").read_text()
    assert "User kube" in (project / ".kubenet/ssh_config").read_text()


def test_make_setup_with_a_broken_cluster_file_is_one_clear_line(project):
    (project / "cluster.yaml").write_text("roles:\n  - {name: worker, count: 3, memory: 4X}\n")
    done = make(project, "setup")
    assert done.returncode != 0
    assert f"kubenet: error: {project}/cluster.yaml: roles[0].memory: '4X' is not allowed" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_kernel_image_gets_a_blank_disk_or_an_overlay_on_its_url(project):
    def backing(text: str):
        (project / "cluster.yaml").write_text(text + "ssh_key: id_test.pub\nnetwork: {mode: user}\nroles:\n  - {name: node}\n")
        for name in ("disk.img", "efivars.qcow2"):
            (project / ".kubenet/node" / name).unlink(missing_ok=True)
        run_invoke("vmsetup", "--disk", "--config", str(project / "cluster.yaml"), env={"KUBENET_ACCEL": "tcg"}, check=True)
        disk = project / ".kubenet/node/disk.img"
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, check=True).stdout)
        return info.get("backing-filename"), (project / ".kubenet/node/efivars.qcow2").exists()

    assert backing("image: {kind: kernel, kernel: k, initrd: i}\n") == (None, False)
    assert backing("image: {kind: kernel, kernel: k, initrd: i, url: base.qcow2}\n") == (str(project / "base.qcow2"), False)
