"""While `up` waits: a line per VM still waiting, with what for, how long, and its console's
last line; with real threads, a real console log and a short interval."""

from __future__ import annotations

import time

from kubenet.run.bootprogress import BootProgress, last_console_line, progress_line


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


def test_on_a_terminal_the_block_is_redrawn_in_place_and_other_lines_go_above_it(tmp_path):
    import io

    logs = {name: tmp_path / f"{name}.log" for name in ("node0", "node1")}
    screen = io.StringIO()
    with BootProgress(logs, "SSH", 0.2, lambda line: None, terminal=screen) as progress:
        time.sleep(0.3)
        progress.now_waiting_for("node1", None)
        progress.say("kubenet: node1 answers SSH after 0.3 s")
        time.sleep(0.3)
    text = screen.getvalue()
    first = "kubenet: node0: waiting for SSH, 0 s\nkubenet: node1: waiting for SSH, 0 s\n"
    assert text.startswith(first)  # the first block, nothing to clear yet
    assert "\x1b[2A\x1b[Jkubenet: node1 answers SSH after 0.3 s\nkubenet: node0: waiting for SSH, 0 s\n" in text
    assert text.endswith("\x1b[1A\x1b[J")  # the block is gone at the end; the line said above it stays
