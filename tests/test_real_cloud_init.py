"""kubenet's seeds read by the tooling they are written for: real cloud-init in a real Debian guest.

Two VMs (control0, worker0) boot a Debian root disk made by debootstrap
(tests/realguest) under TCG, in user mode with the VDE switch. cloud-init
itself applies the seed; the test then reads the guests as a user would.
The guests get kubenet's own role templates without the package installs,
since nothing may leave this machine.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import kill_recorded_qemus, make_up, run_invoke, stop_vde_switch
from kubenet.seed import TEMPLATE_DIR
from tinyimage.cluster import free_port_base

pytestmark = pytest.mark.e2e

NAMES = ["control0", "worker0"]
PACKAGE_KEYS = ("package_update", "package_upgrade", "packages")


@pytest.fixture(scope="session")
def debian_guest() -> tuple[Path, Path, Path]:
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not shutil.which("debootstrap"):
        pytest.skip("the Debian guest is made by debootstrap for amd64")
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    from realguest.build import build

    return build()


def offline_templates(directory: Path) -> Path:
    """kubenet's templates less what would reach the internet; minimal Debian has no locales."""
    directory.mkdir()
    for path in TEMPLATE_DIR.glob("*.yaml"):
        config = {key: value for key, value in (yaml.safe_load(path.read_text()) or {}).items() if key not in PACKAGE_KEYS}
        if path.stem == "common":
            config["locale"] = False
        (directory / path.name).write_text(yaml.safe_dump(config))
    return directory


def write_cluster(directory: Path, kernel: Path, initrd: Path, disk: Path) -> Path:
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = directory / "cluster.yaml"
    path.write_text(
        "name: kci\n"
        "roles:\n  - {name: control, count: 1, vcpus: 1, memory: 1G}\n  - {name: worker, count: 1, vcpus: 1, memory: 1G}\n"
        f"network: {{mode: user, ssh_port_base: {free_port_base(len(NAMES))}}}\n"
        f"image: {{kind: kernel, kernel: {kernel}, initrd: {initrd}, cmdline: root=/dev/vda rw, url: {disk}}}\n"
        f"templates: {offline_templates(directory / 'templates')}\n"
        f"ssh_key: {key}.pub\n"
        "accel: tcg\n"
        "disk_size: 4G\n"
    )
    return path


def on_each(config: Path, env: dict, command: str) -> dict[str, list[str]]:
    """Run `command` on both VMs with `invoke exec`; their output lines by VM."""
    done = run_invoke("exec", "--config", str(config), "--", command, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines: dict[str, list[str]] = {vm: [] for vm in NAMES}
    for line in done.stdout.splitlines():
        vm, _, text = line.partition(":")
        lines[vm].append(text.strip())
    return lines


def test_real_cloud_init_applies_the_seed_kubenet_writes(debian_guest, short_dir, tmux_server):
    kernel, initrd, disk = debian_guest
    config = write_cluster(short_dir, kernel, initrd, disk)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        up = make_up(config, env)
        # ready means `ssh true` passed strict checking against the host key made at setup
        assert "kubenet: 2 of 2 VMs ready: control0 worker0" in up.stderr

        # cloud-init ran every module without an error
        statuses = on_each(config, env, "cloud-init status --wait >/dev/null; cloud-init status --long")
        for vm in NAMES:
            assert "status: done" in statuses[vm], statuses[vm]  # not `error`

        facts = on_each(
            config, env,
            "hostname; id -un; sudo -n true && echo sudo; ls /etc/ssh/ | grep '^ssh_host_'; "
            "ip -o -4 addr show | awk '{print $2, $4}'; grep kubenet /etc/hosts; "
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/all/arp_ignore; grep -c ^br_netfilter /proc/modules",
        )  # fmt: skip
        hosts = [
            "10.0.2.2 vmhost.kubenet vmhost",
            "192.168.1.21 kubernetes.kubenet kubernetes",
            "192.168.1.10 control0.kubenet control0",
            "192.168.1.11 worker0.kubenet worker0",
        ]
        for index, vm in enumerate(NAMES):
            lines = facts[vm]
            assert lines[:3] == [vm, "ubuntu", "sudo"], lines  # the login user, with the distribution's sudo rights
            assert lines[3:5] == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]  # ours, and no other
            addresses = dict(line.split() for line in lines if re.match(r"^\S+ \d+\.\d+\.\d+\.\d+/\d+$", line))
            assert sorted(addresses.values()) == ["10.0.2.15/24", "127.0.0.1/8", f"192.168.1.1{index}/24"]
            assert all(line in lines for line in hosts), lines
            sysctls = lines[-3:-1]
            assert sysctls == (["1", "1"] if vm == "control0" else ["1", "0"])  # the control template's ARP setting
            assert lines[-1] == "1"  # br_netfilter loaded by the templates' runcmd

        # the cluster segment carries the cluster names and addresses
        ping = run_invoke("exec", "--name", "control0", "--config", str(config), "--", "ping -c 1 -W 5 worker0", env=env)
        assert ping.returncode == 0 and "1 received" in ping.stdout, ping.stdout + ping.stderr

        # systemd acts on the ACPI power button
        down = run_invoke("down", "--timeout", "120", "--config", str(config), env=env, check=True)
        assert sorted(re.findall(r"kubenet: (\S+): powered off", down.stderr)) == NAMES, down.stderr
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
