"""End to end: real qemu (TCG), real tmux, real SSH, real guests reading kubenet's seeds.

The tutorial's seven VMs (256 MiB each, user-mode networking with a VDE
switch) boot the tiny image built from Debian packages (tests/tinyimage), and
the test drives them only through the commands a user types.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import INVOKE, ROOT, Client, kill_recorded_qemus, make_up, run_invoke, stop_vde_switch, wait_for
from kubenet.plumbing.process import pid_alive
from tinyimage.cluster import write_cluster

pytestmark = pytest.mark.e2e

NAMES = ["gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2"]
NODES = NAMES[1:]




def tmux(socket_path: str, *args: str) -> str:
    return subprocess.run(["tmux", "-S", socket_path, *args], capture_output=True, text=True, check=True).stdout


def command_lines() -> list[bytes]:
    """Every process's command line, as far as it can be read."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_bytes())
        except OSError:
            pass
    return found


def ssh(config: Path, vm: str, command: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", *options, vm, command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_make_up_boots_the_tutorials_cluster_and_down_powers_it_off(tiny_image, short_dir, tmux_server):
    kernel, initrd = tiny_image
    config = write_cluster(short_dir, kernel, initrd)
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        # make up: set every VM up, launch all seven, wait until each answers SSH
        up = make_up(config, env)
        assert f"kubenet: 7 of 7 VMs ready: {' '.join(NAMES)}" in up.stderr

        # every VM answers through the generated ssh_config, its host key pinned before boot
        ssh_config = state / "ssh_config"
        known_hosts = (state / "known_hosts").read_text()
        for vm in NAMES:
            done = ssh(ssh_config, vm, "hostname")
            assert (done.returncode, done.stdout) == (0, f"{vm}\n"), done.stderr
        assert (state / "known_hosts").read_text() == known_hosts  # nothing learnt on first use
        (short_dir / "empty_known_hosts").write_text("")
        unknown = ssh(ssh_config, "worker2", "true", "-o", f"UserKnownHostsFile={short_dir / 'empty_known_hosts'}")
        assert unknown.returncode == 255 and "strict checking" in unknown.stderr  # an unknown key is refused

        # ssh-all, then `hostname` typed once into the synchronised ssh-nodes window
        run_invoke("ssh-all", "--no-attach", "--config", str(config), env=env, check=True)
        panes = dict(
            line.split()
            for line in tmux(tmux_server, "list-panes", "-t", "=kt-ssh:ssh-nodes", "-F", "#{pane_id} #{@kubenet-vm}").splitlines()
        )
        assert sorted(panes.values()) == sorted(NODES)

        def screen(pane: str) -> list[str]:
            return [line.rstrip() for line in tmux(tmux_server, "capture-pane", "-p", "-t", pane).splitlines()]

        assert wait_for(lambda: all("$" in "".join(screen(pane)) for pane in panes), timeout=60), {
            vm: screen(pane) for pane, vm in panes.items()
        }
        client = Client(tmux_server, "=kt-ssh:ssh-nodes")
        try:
            synchronized = lambda: tmux(tmux_server, "show-options", "-wqv", "-t", "=kt-ssh:ssh-nodes", "synchronize-panes").strip()
            assert wait_for(lambda: tmux(tmux_server, "list-clients") != "", timeout=10)
            client.press(b"\x02\x13")  # prefix (C-b), then C-s: kubenet's sync key
            assert wait_for(lambda: synchronized() == "on", timeout=10)
            client.press(b"hostname\r")
            assert wait_for(lambda: all(vm in screen(pane) for pane, vm in panes.items()), timeout=30), {
                vm: screen(pane) for pane, vm in panes.items()
            }
        finally:
            client.close()

        # exec: one command everywhere, one prefixed line per VM on stdout
        done = run_invoke("exec", "--config", str(config), "--", "hostname", env=env, check=True)
        assert sorted(line.split() for line in done.stdout.splitlines()) == sorted([f"{vm}:", vm] for vm in NAMES)
        assert "kubenet: exec: 7 of 7 VMs succeeded" in done.stderr

        # a pipeline that closes early ends exec at once and quietly, and stops its ssh
        pipeline = (
            f"set -o pipefail; {shlex.quote(str(INVOKE))} --search-root {shlex.quote(str(ROOT))} exec --name gateway "
            f"--config {shlex.quote(str(config))} -- 'seq 1 200000' | head -1"
        )
        done = subprocess.run(["bash", "-c", pipeline], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (141, "gateway: 1\n", "")
        assert wait_for(lambda: not any(b"seq 1 200000" in line for line in command_lines()), timeout=10)

        # the cluster segment: control0 reaches worker2 by name and by address over VDE
        done = run_invoke(
            "exec", "--name", "control0", "--config", str(config), "--",
            "ping -c 1 -W 5 worker2 && ping -c 1 -W 5 192.168.1.16", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.findall(r"1 packets transmitted, 1 received", done.stdout) == ["1 packets transmitted, 1 received"] * 2
        assert "PING worker2.kubenet (192.168.1.16)" in done.stdout

        # ls --json: seven running and ready
        rows = json.loads(run_invoke("ls", "--json", "--config", str(config), env=env, check=True).stdout)
        assert [(row["name"], row["state"], row["ready"]) for row in rows] == [(vm, "running", "yes") for vm in NAMES]
        qemu_pids = [row["pid"] for row in rows]
        vde_pid = int((state / "vde.pid").read_text())
        tmux_pid = int(tmux(tmux_server, "display-message", "-p", "#{pid}"))
        disks = {vm: (state / vm / "disk.img").stat().st_ino for vm in NAMES}

        # down: every guest powers off through the ACPI button within the timeout
        done = run_invoke("down", "--timeout", "60", "--config", str(config), env=env, check=True)
        assert sorted(re.findall(r"kubenet: (\S+): powered off", done.stderr)) == sorted(NAMES), done.stderr
        assert "removed tmux session kt-qemu" in done.stderr and "removed tmux session kt-ssh" in done.stderr
        assert wait_for(lambda: not any(pid_alive(pid) for pid in [*qemu_pids, vde_pid, tmux_pid]), timeout=10)
        for vm, inode in disks.items():
            disk = state / vm / "disk.img"
            assert disk.stat().st_ino == inode
            info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, check=True).stdout)
            assert (info["format"], info["virtual-size"]) == ("qcow2", 64 * 1024 * 1024)
            subprocess.run(["qemu-img", "check", "-q", str(disk)], check=True)
        for vm in NAMES:
            assert f"kubenet-init: ready: {vm} sshd listening" in (state / vm / "serial.log").read_text()
    finally:
        kill_recorded_qemus(state)
        stop_vde_switch(state)
