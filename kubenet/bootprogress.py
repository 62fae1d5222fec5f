"""While `up` waits, what each VM is waiting for and for how long, with the last line its
console showed (the boot's stage: firmware, kernel, a systemd unit, cloud-init): a line
per VM still waiting, every few seconds, so minutes of booting are not silence."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Callable

# On a terminal a user watches: often; in a log: seldom enough to stay readable.
TERMINAL_SECONDS, LOG_SECONDS = 10.0, 30.0
TAIL_BYTES = 4096
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")


def last_console_line(log: Path) -> str:
    """The console's last non-empty line, without terminal escapes, cut short; '' if none."""
    try:
        with open(log, "rb") as stream:
            stream.seek(0, 2)
            stream.seek(max(0, stream.tell() - TAIL_BYTES))
            tail = stream.read()
    except OSError:
        return ""
    lines = [line.strip() for line in ESCAPES.sub(b"", tail).replace(b"\r", b"\n").split(b"\n")]
    text = next((line for line in reversed(lines) if line), b"").decode(errors="replace")
    printable = "".join(ch for ch in text if ch.isprintable())
    return printable if len(printable) <= 80 else printable[:77] + "..."


def progress_line(vm: str, waiting_for: str, seconds: float, console: str) -> str:
    return f"{vm}: waiting for {waiting_for}, {seconds:.0f} s" + (f" (console: {console})" if console else "")


class BootProgress:
    """Which VMs are still waiting, and for what; `run` says so every `interval` seconds until stopped."""

    def __init__(self, logs: dict[str, Path], first: str, interval: float, say: Callable[[str], None]):
        self.logs, self.interval, self.say = logs, interval, say
        self.waiting = dict.fromkeys(logs, first)
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def now_waiting_for(self, vm: str, what: str | None) -> None:
        with self.lock:
            if what is None:
                self.waiting.pop(vm, None)
            else:
                self.waiting[vm] = what

    def lines(self) -> list[str]:
        with self.lock:
            waiting = dict(self.waiting)
        seconds = time.monotonic() - self.started
        return [progress_line(vm, what, seconds, last_console_line(self.logs[vm])) for vm, what in waiting.items()]

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            for line in self.lines():
                self.say(f"kubenet: {line}")

    def __enter__(self) -> "BootProgress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
