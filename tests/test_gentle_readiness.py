"""Waiting for VMs costs their guests nothing: `up` reads the marks the guest prints on its
console (bootmarks.py) and then logs in once, waiting for sshd as long as it takes; an
image without marks is tried seconds apart; `ls` says what the guest proved, the same each
time, and knocks on no guest.

Real tiny VMs under TCG (tests/tinyimage), whose sshd (dropbear) logs every connection it
takes on the console: "Child connection from ..." for each, "Exit before auth" for one
whose client hung up before logging in (a handshake left half-way).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import kill_recorded_qemus, ls_rows, make_up, run_invoke, stop_vde_switch, wait_for
from tinyimage.cluster import write_cluster

pytestmark = pytest.mark.e2e

ONE_NODE = "  - {name: node, count: 1, vcpus: 1, memory: 256M}\n"


def tiny_cluster(directory: Path, tiny_image, cmdline: str) -> Path:
    """One tiny VM whose kernel command line carries the test image's switches (`tiny.*`)."""
    kernel, initrd = tiny_image
    config = write_cluster(directory, kernel, initrd, ONE_NODE, 1)
    config.write_text(config.read_text().replace(f"initrd: {initrd}}}", f"initrd: {initrd}, cmdline: '{cmdline}'}}"))
    return config


def console(state: Path) -> str:
    return (state / "node0" / "serial.log").read_text(errors="replace")


def connections(log: str) -> int:
    return log.count("Child connection from")


def test_a_guest_whose_sshd_answers_slowly_is_logged_into_once_and_no_handshake_is_abandoned(tiny_image, short_dir, tmux_server):
    config = tiny_cluster(short_dir, tiny_image, "console=ttyS0 tiny.slowsshd")
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        up = make_up(config, env)
        assert "kubenet: 1 of 1 VMs ready: node0" in up.stderr
        log = console(state)
        assert re.search(r"kubenet-mark \S+ ssh", log), log[-2000:]  # the guest said when sshd listened
        assert "Exit before auth" not in log, log[-2000:]  # no connection left half-way
        assert connections(log) == 1, log[-2000:]  # one login: SSH works, and cloud-init's state (none here)

        # READY is what the guest proved, the same each time, and asking costs the guest nothing
        for _ in range(5):
            assert [row["ready"] for row in ls_rows(config, env)] == ["yes"]
        assert connections(console(state)) == 1

        # a second `up` asks nothing of a guest that proved ready in this boot
        again = run_invoke("up", "--config", str(config), env=env, check=True)
        assert "kubenet: 1 of 1 VMs ready: node0" in again.stderr
        assert connections(console(state)) == 1

        # the guest reboots inside its qemu: READY says so, and `up` waits for the new boot
        before = console(state).count("kubenet-mark")
        subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", "-l", "root", "node0", "reboot"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)  # the test image lets root in with the same key
        assert wait_for(lambda: [row["ready"] for row in ls_rows(config, env)] == ["rebooted"], timeout=120)
        after = run_invoke("up", "--config", str(config), env=env, check=True)
        assert "kubenet: 1 of 1 VMs ready: node0" in after.stderr
        assert console(state).count("kubenet-mark") >= before + 3  # the new boot's marks: boot, ssh, cloud-init
        assert [row["ready"] for row in ls_rows(config, env)] == ["yes"]
        assert "Exit before auth" not in console(state)
    finally:
        run_invoke("down", "--config", str(config), env=env)
        kill_recorded_qemus(state)
        stop_vde_switch(state)


def test_an_image_without_marks_is_tried_seconds_apart_and_reaches_ready(tiny_image, short_dir, tmux_server):
    config = tiny_cluster(short_dir, tiny_image, "console=ttyS0 tiny.nobootcmd")
    state = short_dir / ".kubenet"
    env = {"KUBENET_TMUX_SOCKET": tmux_server, "KUBENET_ACCEL": "tcg"}
    try:
        up = make_up(config, env)
        assert "kubenet: 1 of 1 VMs ready: node0" in up.stderr
        log = console(state)
        assert "kubenet-mark" not in log  # no bootcmd ran: no marks
        assert "Exit before auth" not in log, log[-2000:]
        assert 1 <= connections(log) <= 2, log[-2000:]  # tries seconds apart, not tenths
    finally:
        run_invoke("down", "--config", str(config), env=env)
        kill_recorded_qemus(state)
        stop_vde_switch(state)
