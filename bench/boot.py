"""How long `make up` takes to bring real VMs to SSH, and how much of it is kubenet's.

Boots the tiny test image (tests/tinyimage) under TCG, 1 VM and then the
tutorial's 7, each with `make up` from nothing. For every VM it prints when
the guest's SSH server started listening (the guest's own uptime, read from
its console log) and when `up` saw it answer SSH (counted from the launch):
the difference is qemu's start-up, readiness polling and the SSH handshake.
A watcher also notes, on the host's clock, when each console printed that
line and when `up` marked the VM ready: that gap is kubenet's own latency.
Run: `make bench-boot` (or python bench/boot.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tinyimage.build import build  # noqa: E402
from tinyimage.cluster import TUTORIAL_ROLES, write_cluster  # noqa: E402

INVOKE = str(Path(sys.executable).parent / "invoke")
LISTENING = re.compile(r"kubenet-init: ready: (\S+) sshd listening at ([0-9.]+)s")
READY = re.compile(r"kubenet: (\S+) answers SSH after ([0-9.]+) s")


class Watcher(threading.Thread):
    """Notes when each VM's console says sshd listens, and when `up` marks it ready."""

    def __init__(self, state: Path, names: list[str], start: float):
        super().__init__(daemon=True)
        self.state, self.names, self.origin = state, names, start
        self.listening: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            now = time.perf_counter() - self.origin
            for vm in self.names:
                directory = self.state / vm
                if vm not in self.listening:
                    try:
                        if "sshd listening" in (directory / "serial.log").read_text(errors="replace"):
                            self.listening[vm] = now
                    except OSError:
                        pass
                if vm not in self.ready and (directory / "ready").exists():
                    self.ready[vm] = now
            time.sleep(0.01)


def boot(count: int, kernel: Path, initrd: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="knboot"))
    roles = "".join(TUTORIAL_ROLES.splitlines(keepends=True)[: 1 if count == 1 else None])
    config = write_cluster(directory, kernel, initrd, roles, count)
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(directory / "tmux.sock"), "KUBENET_ACCEL": "tcg"}
    invoke = [INVOKE, "--search-root", str(ROOT)]
    try:
        start = time.perf_counter()
        setup = subprocess.run(["make", "-C", str(ROOT), "setup", f"CONFIG={config}"], env=env, capture_output=True, text=True)
        set_up = time.perf_counter() - start
        names = subprocess.run([*invoke, "ls", "--names", "--config", str(config)], env=env, capture_output=True, text=True).stdout.split()
        watcher = Watcher(directory / ".kubenet", names, start)
        watcher.start()
        up = subprocess.run(["make", "-C", str(ROOT), "up", f"CONFIG={config}"], env=env, capture_output=True, text=True)
        total = time.perf_counter() - start
        watcher.done.set()
        watcher.join()
        if setup.returncode or up.returncode:
            raise SystemExit(f"make failed:\n{setup.stderr}\n{up.stderr}")
        ready = dict(READY.findall(up.stderr))
        print(f"{count} VM{'s' if count > 1 else ''}: make up {total:.1f} s from nothing to all ready "
              f"(setup {set_up:.1f} s, launch and wait {total - set_up:.1f} s)")  # fmt: skip
        for vm in ready:
            log = (directory / ".kubenet" / vm / "serial.log").read_text(errors="replace")
            listening = dict(LISTENING.findall(log)).get(vm)
            seen, marked = watcher.listening.get(vm, float("nan")), watcher.ready.get(vm, float("nan"))
            print(
                f"  {vm:9} sshd listening at guest uptime {listening} s; up saw SSH answer {ready[vm]} s after launch; "
                f"console line at {seen:.2f} s, marked ready at {marked:.2f} s: {marked - seen:.2f} s to notice"
            )
    finally:
        subprocess.run([*invoke, "down", "--timeout", "30", "--config", str(config)], env=env, capture_output=True)
        subprocess.run(["tmux", "-S", str(directory / "tmux.sock"), "kill-server"], capture_output=True)
        for pid_file in [*directory.glob(".kubenet/*/qemu.pid"), directory / ".kubenet/vde.pid"]:
            try:
                os.kill(int(pid_file.read_text()), 9)  # only if `down` could not stop it
            except (OSError, ValueError):
                pass
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    kernel, initrd = build()
    print(f"tiny image: {kernel} + {initrd}; {os.cpu_count()} cores, TCG")
    for count in (1, 7):
        boot(count, kernel, initrd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
