"""While `up` waits, what each VM is waiting for and for how long, with the last line its
console showed (the boot's stage: firmware, kernel, a systemd unit, cloud-init), so
minutes of booting are not silence: on a terminal, a line per VM still waiting that
updates in place (other lines are written above it); elsewhere, the same lines every
half minute, as plain lines for a log."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

# On a terminal the block is redrawn in place; in a log, lines come seldom enough to stay readable.
TERMINAL_SECONDS, LOG_SECONDS = 1.0, 30.0
UP_AND_CLEAR = "\x1b[{}A\x1b[J"  # cursor up over the block, then erase to the end of the screen
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
    """Which VMs are still waiting, and for what. Every `interval` seconds it says so: as
    plain lines, or, given a `terminal` stream, as a block redrawn in place; `say` then
    writes a line above the block."""

    def __init__(self, logs: dict[str, Path], first: str, interval: float, say: Callable[[str], None], terminal: TextIO | None = None):
        self.logs, self.interval, self._say, self.terminal = logs, interval, say, terminal
        self.waiting = dict.fromkeys(logs, first)
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.shown = 0  # lines of the block on the terminal now
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
        return [f"kubenet: {progress_line(vm, what, seconds, last_console_line(self.logs[vm]))}" for vm, what in waiting.items()]

    def say(self, line: str) -> None:
        """A line of its own (a VM ready, say): above the block on a terminal."""
        if self.terminal is None:
            self._say(line)
            return
        self._redraw(self.lines(), above=line)

    def _redraw(self, block: list[str], above: str | None = None) -> None:
        with self.lock:
            text = (UP_AND_CLEAR.format(self.shown) if self.shown else "") + "".join(f"{line}\n" for line in ([above] if above else []) + block)
            self.shown = len(block)
            self.terminal.write(text)
            self.terminal.flush()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            if self.terminal is None:
                for line in self.lines():
                    self._say(line)
            else:
                self._redraw(self.lines())

    def __enter__(self) -> "BootProgress":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        if self.terminal is not None and self.shown:
            self._redraw([])  # the block goes; what was said above it stays
