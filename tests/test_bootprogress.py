"""While `up` waits: a line per VM still waiting, with what for, how long, and its console's
last line; with real threads, a real console log and a short interval."""

from __future__ import annotations

import time

from kubenet.bootprogress import BootProgress, last_console_line, progress_line


def test_the_last_console_line_is_plain_text_cut_short(tmp_path):
    log = tmp_path / "serial.log"
    assert last_console_line(log) == ""  # not started yet
    log.write_bytes(b"BdsDxe: loading Boot0001\r\n\x1b[0;32m  OK  \x1b[0m] Started \x1b[1mOpenBSD Secure Shell server\x1b[0m.\r\n\r\n")
    assert last_console_line(log) == "OK  ] Started OpenBSD Secure Shell server."
    log.write_bytes(b"x" * 10_000 + b"\n" + b"y" * 200 + b"\xff\n")
    assert last_console_line(log) == "y" * 77 + "..."


def test_waiting_vms_are_reported_at_each_interval_until_they_are_ready(tmp_path):
    logs = {name: tmp_path / f"{name}.log" for name in ("node0", "node1")}
    logs["node0"].write_bytes(b"[    1.2] Run /init as init process\n")
    said: list[str] = []
    with BootProgress(logs, "SSH", 0.2, said.append) as progress:
        time.sleep(0.5)
        progress.now_waiting_for("node0", "cloud-init")
        progress.now_waiting_for("node1", None)  # ready
        said.append("--")
        time.sleep(0.5)
        progress.now_waiting_for("node0", None)
        said.append("--")
        time.sleep(0.5)
    first, second, third = "\n".join([*said, ""]).split("\n--\n")
    assert "kubenet: node0: waiting for SSH, 0 s (console: [    1.2] Run /init as init process)" in first
    assert "kubenet: node1: waiting for SSH, 0 s" in first
    assert "node1" not in second and "kubenet: node0: waiting for cloud-init, " in second
    assert third.strip() == ""  # nothing is waiting: nothing is said
    assert progress_line("w", "SSH", 61.4, "") == "w: waiting for SSH, 61 s"
