"""The tutorial's own boot path, end to end: a cloud disk image booted through UEFI
firmware, whose real cloud-init applies the seeds kubenet writes.

Two VMs boot a UEFI-bootable Debian disk laid out as Ubuntu's cloud images are
(tests/realguest), as `image.kind: cloud` with a local `image.url` and its
`image.sha256`, under TCG in user mode. They get kubenet's own role templates
without the package installs, since nothing may leave this machine. `make up`
waits for cloud-init to finish; the test reads the guests as a user would;
then one VM is run with `invoke vm`, and `make up` again: whichever form
started it, a VM keeps booting its disk with the UEFI variables it kept.
Before `invoke vm`, the control role's templates change (a file more, the API's
virtual IP on loopback through a network-config extra) and `make setup` remakes
its seed: control0 re-provisions at that boot, keeping its data and its host key,
and worker0, whose seed did not change, does not.
Snapshots, stopped and live, bring the VMs back to a moment and boot their disks
from there, without cloud-init running again or a host key changing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import yaml

from conftest import INVOKE, ROOT, kill_recorded_qemus, ls_rows, make_up, run_invoke, stop_vde_switch, wait_for
from kubenet.prepare.seed import TEMPLATE_DIR
from tinyimage.cluster import free_port_base

pytestmark = pytest.mark.e2e

NAMES = ["control0", "worker0"]
PACKAGE_KEYS = ("package_update", "package_upgrade", "packages")
# What a guest was provisioned as: cloud-init's per-instance markers (re-written if it ran
# them again) and the host key it was given.
IDENTITY = "ls --full-time /var/lib/cloud/instance/sem/; sudo -n ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"


def offline_templates(directory: Path) -> Path:
    """kubenet's templates less what would reach the internet; minimal Debian has no locales.

    `locale: "false"` (a string, as cloud-config's schema wants) makes cloud-init skip its locale module.
    """
    directory.mkdir()
    for path in TEMPLATE_DIR.glob("*.yaml"):
        config = {key: value for key, value in (yaml.safe_load(path.read_text()) or {}).items() if key not in PACKAGE_KEYS}
        if path.stem == "common":
            config["locale"] = "false"
        (directory / path.name).write_text(yaml.safe_dump(config))
    return directory


@pytest.fixture(scope="session")
def uefi_image() -> Path:
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not shutil.which("debootstrap"):
        pytest.skip("the Debian guest is made by debootstrap for amd64")
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    from realguest.build import build_uefi

    return build_uefi()


def change_control_templates(directory: Path) -> None:
    """A file more for control nodes, and the API's virtual IP on their loopback."""
    path = directory / "control.yaml"
    config = yaml.safe_load(path.read_text())
    config.setdefault("write_files", []).append({"path": "/etc/kubenet-stage", "content": "stage5\n"})
    path.write_text(yaml.safe_dump(config))
    (directory / "network-config").mkdir()
    (directory / "network-config" / "control.yaml").write_text("ethernets:\n  lo:\n    match: {name: lo}\n    addresses: [192.168.1.21/32]\n")


def write_cluster(directory: Path, image: Path) -> Path:
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    path = directory / "cluster.yaml"
    path.write_text(
        "name: kuefi\n"
        "roles:\n  - {name: control, count: 1, vcpus: 1, memory: 1G}\n  - {name: worker, count: 1, vcpus: 1, memory: 1G}\n"
        f"network: {{mode: user, ssh_port_base: {free_port_base(len(NAMES))}}}\n"
        f"image: {{kind: cloud, url: 'file://{image}', sha256: {digest}}}\n"
        f"templates: {offline_templates(directory / 'templates')}\n"
        f"ssh_key: {key}.pub\n"
        "accel: tcg\n"
        "disk_size: 4G\n"
    )
    return path


def run_on(config: Path, env: dict, vm: str, command: str) -> str:
    done = run_invoke("exec", "--name", vm, "--config", str(config), "--", command, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return "\n".join(line.split(":", 1)[1].strip() for line in done.stdout.splitlines())


def test_a_uefi_cloud_image_boots_under_up_and_vm_in_any_order(uefi_image, short_dir, tmux_server):
    config = write_cluster(short_dir, uefi_image)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    ssh_config = state / "ssh_config"
    try:
        started = time.monotonic()
        up = make_up(config, env)
        first_up = time.monotonic() - started
        # ready means SSH with the pinned key, and cloud-init finished without an error
        for vm in NAMES:
            assert re.search(rf"kubenet: {vm} ready after [0-9.]+ s \(cloud-init done\)", up.stderr), up.stderr
        assert "kubenet: 2 of 2 VMs ready: control0 worker0" in up.stderr
        print(f"\nUEFI make up of 2 VMs: {first_up:.1f} s to cloud-init done; SSH: "
              + ", ".join(re.findall(r"kubenet: (\S+ answers SSH after [0-9.]+ s)", up.stderr)))  # fmt: skip

        # up waited on the marks the guests printed (the watcher outlived cloud-init's bootcmd,
        # under systemd), then logged in at most twice, and left no handshake half-way
        for vm in NAMES:
            log = (state / vm / "serial.log").read_text(errors="replace")
            assert re.search(r"kubenet-mark \S+ ssh", log) and re.search(r"kubenet-mark \S+ cloud-init done", log), log[-3000:]
            sshd = run_on(config, env, vm, "sudo journalctl -b -u ssh --no-pager")
            logins = sshd.count("Accepted publickey") - 1  # less this one
            assert 1 <= logins <= 2 and "kex_exchange_identification" not in sshd and "[preauth]" not in sshd, sshd
            print(f"{vm}: {logins} logins before ready")

        hosts = [
            "10.0.2.2 vmhost.kubenet vmhost",
            "192.168.1.21 kubernetes.kubenet kubernetes",
            "192.168.1.10 control0.kubenet control0",
            "192.168.1.11 worker0.kubenet worker0",
        ]
        for index, vm in enumerate(NAMES):
            lines = run_on(
                config, env, vm,
                "test -d /sys/firmware/efi && echo uefi; cloud-init status --long | head -1; "
                "hostname; id -un; sudo -n true && echo sudo; ls /etc/ssh/ | grep '^ssh_host_'; "
                "ip -o -4 addr show | awk '{print $4}'; grep kubenet /etc/hosts; "
                "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/all/arp_ignore; grep -c ^br_netfilter /proc/modules",
            ).splitlines()  # fmt: skip
            assert lines[:2] == ["uefi", "status: done"], lines  # booted through UEFI; cloud-init without an error
            assert lines[2:5] == [vm, "ubuntu", "sudo"], lines  # the login user, with the distribution's sudo rights
            assert lines[5:7] == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]  # ours, and no other
            assert sorted(lines[7:10]) == ["10.0.2.15/24", "127.0.0.1/8", f"192.168.1.1{index}/24"], lines  # by MAC
            assert all(line in lines for line in hosts), lines
            assert lines[-3:-1] == (["1", "1"] if vm == "control0" else ["1", "0"])  # the control template's ARP setting
            assert lines[-1] == "1"  # br_netfilter loaded by the templates' runcmd
        assert "1 received" in run_on(config, env, "control0", "ping -c 1 -W 5 worker0")  # over the cluster segment
        first_boot = {vm: run_on(config, env, vm, IDENTITY) for vm in NAMES}
        # a UEFI boot with cloud-init fills QEMU's default 1 GiB translation cache; bounded, each
        # qemu holds less than its 1 GiB guest and that cache together by far
        held = {row["name"]: row["rss"] for row in ls_rows(config, env)}
        print("qemu resident memory after cloud-init: " + ", ".join(f"{vm} {rss >> 20} MiB" for vm, rss in held.items()))
        assert all(rss < (1 << 30) + (256 << 20) for rss in held.values()), held
        run_on(config, env, "control0", "echo kept > data")

        down = run_invoke("down", "--timeout", "120", "--config", str(config), env=env, check=True)
        assert sorted(re.findall(r"kubenet: (\S+): powered off", down.stderr)) == NAMES, down.stderr  # by ACPI

        # the control role's templates change, as chapter 5 changes them; `make setup` remakes its seed
        change_control_templates(short_dir / "templates")
        setup = subprocess.run(["make", "-C", str(ROOT), "setup", f"CONFIG={config}"], env={**os.environ, **env}, capture_output=True, text=True)
        assert setup.returncode == 0, setup.stdout + setup.stderr

        # `invoke vm`: qemu in the foreground, without what `up` adds; the kept UEFI variables still boot the disk,
        # and cloud-init applies the new seed to it
        said, console = short_dir / "vm.stderr", short_dir / "vm.console"
        with said.open("w") as stderr, console.open("w") as stdout:
            vm = subprocess.Popen(
                [str(INVOKE), "--search-root", str(ROOT), "vm", "--name", "control0", "--config", str(config)],
                env={**os.environ, **env}, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        try:
            # its console is qemu's stdio: the guest says there when cloud-init has finished, and only then is it asked
            finished = lambda: re.search(r"kubenet-mark \S+ cloud-init", console.read_text(errors="replace"))  # noqa: E731
            assert wait_for(finished, timeout=900, interval=1), "control0 under `invoke vm` never finished cloud-init:\n" + console.read_text(errors="replace")[-3000:]
            assert "kubenet: control0 re-provisions at this boot" in said.read_text()
            ssh = ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=60", "control0"]  # its host key still the pinned one
            applied = subprocess.run(
                [*ssh, "cloud-init status --wait >/dev/null; cat /etc/kubenet-stage data; ip -o -4 addr show dev lo | awk '{print $4}' | sort"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert applied.stdout.split() == ["stage5", "kept", "127.0.0.1/8", "192.168.1.21/32"], applied.stdout + applied.stderr
            subprocess.run([*ssh, "sudo poweroff"], capture_output=True, timeout=30)
            vm.wait(timeout=120)
        finally:
            if vm.poll() is None:
                vm.kill()
                vm.wait()

        # a snapshot of the stopped cluster: disks and UEFI variables as they are now
        run_invoke("snapshot", "save", "cold", "--config", str(config), env=env, check=True)

        # and `make up` again, with every VM's variable store as `invoke vm` left it
        again = make_up(config, env)
        assert "kubenet: 2 of 2 VMs ready: control0 worker0" in again.stderr, again.stderr
        assert "re-provision" not in again.stderr  # control0 has booted its new seed
        provisioned = {vm: run_on(config, env, vm, IDENTITY) for vm in NAMES}
        assert provisioned["worker0"] == first_boot["worker0"]  # its seed never changed
        assert provisioned["control0"] != first_boot["control0"]  # cloud-init ran its per-instance modules again
        for vm in NAMES:
            run_on(config, env, vm, "echo after-cold > note")

        # live: back to the saved moment, running, the process from before still there, the clock the host's
        sleepers = {vm: run_on(config, env, vm, "echo saved > live; setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $!") for vm in NAMES}
        run_invoke("snapshot", "save", "warm", "--config", str(config), env=env, check=True)
        for vm in NAMES:
            run_on(config, env, vm, f"echo changed > live; kill {sleepers[vm]}")
        run_invoke("snapshot", "restore", "warm", "--config", str(config), env=env, check=True)
        for vm in NAMES:
            before = time.time()
            lines = run_on(config, env, vm, f"cat live; kill -0 {sleepers[vm]} && echo alive; date +%s.%N").splitlines()
            assert lines[:2] == ["saved", "alive"], lines
            assert before - 1 <= float(lines[2]) <= time.time() + 1, (vm, lines[2], before)
            assert run_on(config, env, vm, IDENTITY) == provisioned[vm]  # cloud-init's instance and the host key as made
        run_invoke("down", "--timeout", "120", "--config", str(config), env=env, check=True)

        # stopped: the disks back to before `make up` wrote the note; they boot from there
        run_invoke("snapshot", "restore", "cold", "--config", str(config), env=env, check=True)
        make_up(config, env)
        for vm in NAMES:
            assert run_on(config, env, vm, "cat note 2>/dev/null || echo none") == "none"
            assert run_on(config, env, vm, IDENTITY) == provisioned[vm]
        run_invoke("down", "--timeout", "120", "--config", str(config), env=env, check=True)
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
