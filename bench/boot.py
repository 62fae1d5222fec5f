"""How gently and how fast `invoke up` brings real VMs to ready, against the same qemus
started directly.

Boots the tiny test image (tests/tinyimage) under TCG: the tutorial's 7 VMs, set up
once with `make setup`. Each round runs, in turn:

- kubenet: `invoke up` (tmux panes, the console marks, its logins), timed from the
  command's start to each VM's "ready" line; then `invoke down`.
- direct: the same qemu command lines (`invoke argv --managed`) started as plain
  processes, each VM's console log watched every 10 ms for the guest's "sshd listens"
  mark, then one SSH login as kubenet's (`cloud-init status --long`), timed from the
  start to that login's end; then each qemu quits.

For each VM it prints the SSH connections its guest's sshd took before ready (dropbear
logs each on the console: "Child connection from"; goal: at most 3) and whether any was
left half-way ("Exit before auth"); then the time to all seven ready, kubenet against
direct, as medians over the rounds and their ratio (goal: within 1.05x).
Run: `make bench-boot` (or python bench/boot.py [ROUNDS]).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from tinyimage.build import build  # noqa: E402
from tinyimage.cluster import TUTORIAL_ROLES, tear_down, write_cluster  # noqa: E402

INVOKE = str(Path(sys.executable).parent / "invoke")
READY = re.compile(r"^kubenet: (\S+) ready after", re.MULTILINE)
SSHD_LISTENS = re.compile(r"kubenet-mark \S+ (ssh|cloud-init)")


def invoke(config: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([INVOKE, "--search-root", str(ROOT), *args, "--config", str(config)], env=env, capture_output=True, text=True)
    if check and done.returncode:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{done.stderr}")
    return done


def guest_connections(state: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """Per VM: the connections its sshd took, and how many of them were left before login."""
    counts = {}
    for vm in names:
        log = (state / vm / "serial.log").read_text(errors="replace")
        counts[vm] = (log.count("Child connection from"), log.count("Exit before auth"))
    return counts


def with_kubenet(config: Path, env: dict, names: list[str]) -> tuple[float, dict]:
    """`invoke up`: seconds from its start until every VM's ready line; the guests' connections."""
    started = time.perf_counter()
    process = subprocess.Popen([INVOKE, "--search-root", str(ROOT), "up", "--config", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    ready: dict[str, float] = {}
    launched = None
    for line in process.stderr:
        found = READY.match(line)
        if found:
            ready[found[1]] = time.perf_counter() - started
        elif launched is None and line.startswith("kubenet: started "):
            launched = time.perf_counter() - started
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    print(f"  invoke up: every qemu started {launched:.2f} s after the command; its CPU: user {usage.ru_utime:.2f} s, sys {usage.ru_stime:.2f} s")
    if process.returncode or set(ready) != set(names):
        raise SystemExit(f"invoke up failed ({process.returncode}); ready: {sorted(ready)}")
    counts = guest_connections(config.parent / ".kubenet", names)
    server = subprocess.run(["tmux", "-S", env["KUBENET_TMUX_SOCKET"], "display", "-p", "#{pid}"], capture_output=True, text=True).stdout.strip()
    fields = Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()
    print(f"  tmux server cpu: {(int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK'):.2f} s")
    invoke(config, env, "down", "--timeout", "60")
    return max(ready.values()), counts


def with_qemu_alone(config: Path, env: dict, names: list[str]) -> float:
    """The same qemus started directly; seconds until each answered one SSH login after its mark."""
    from kubenet.model.config import load_cluster
    from kubenet.run.vde import ensure_switch, stop_switch

    cluster = load_cluster(config)
    ensure_switch(cluster)
    state = config.parent / ".kubenet"
    argvs = {vm: shlex.split(invoke(config, env, "argv", "--managed", "--name", vm).stdout) for vm in names}
    for vm in names:
        (state / vm / "serial.log").unlink(missing_ok=True)
    started = time.perf_counter()
    qemus = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in argvs.values()]
    ready: dict[str, float] = {}

    def watch(vm: str) -> None:
        log = state / vm / "serial.log"
        while not (log.exists() and SSHD_LISTENS.search(log.read_text(errors="replace"))):
            time.sleep(0.01)
        ssh = ["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=600", vm, "cloud-init status --long"]
        subprocess.run(ssh, capture_output=True, stdin=subprocess.DEVNULL)
        ready[vm] = time.perf_counter() - started

    threads = [threading.Thread(target=watch, args=(vm,), daemon=True) for vm in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    for qemu in qemus:
        qemu.send_signal(signal.SIGTERM)
    for qemu in qemus:
        qemu.wait(60)
    stop_switch(cluster)
    if set(ready) != set(names):
        raise SystemExit(f"direct: not ready: {sorted(set(names) - set(ready))}")
    return max(ready.values())


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    kernel, initrd = build()
    directory = Path(tempfile.mkdtemp(prefix="knboot"))
    config = write_cluster(directory, kernel, initrd, TUTORIAL_ROLES, 7)
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(directory / "tmux.sock"), "KUBENET_ACCEL": "tcg"}
    print(f"tiny image under TCG, 7 VMs of 256 MiB, {os.cpu_count()} cores; {rounds} rounds, kubenet and direct in turn")
    try:
        setup = subprocess.run(["make", "-C", str(ROOT), "setup", f"CONFIG={config}"], env=env, capture_output=True, text=True)
        if setup.returncode:
            raise SystemExit(f"make setup failed:\n{setup.stderr}")
        names = invoke(config, env, "ls", "--names").stdout.split()
        kubenet_times, direct_times, ratios, connections = [], [], [], {vm: [] for vm in names}
        for number in range(1, rounds + 1):
            took, counts = with_kubenet(config, env, names)
            alone = with_qemu_alone(config, env, names)
            kubenet_times.append(took)
            direct_times.append(alone)
            ratios.append(took / alone)
            for vm, count in counts.items():
                connections[vm].append(count)
            print(f"round {number}: kubenet {took:.2f} s, direct {alone:.2f} s ({took / alone:.3f}x)")
        print("SSH connections each guest's sshd took before ready (goal: at most 3), and how many were left half-way:")
        for vm in names:
            taken = [count for count, _ in connections[vm]]
            left = sum(abandoned for _, abandoned in connections[vm])
            print(f"  {vm:9} {' '.join(str(count) for count in taken)} (most {max(taken)}); left half-way: {left}")
        print(
            f"all 7 ready: kubenet {statistics.median(kubenet_times):.2f} s, direct {statistics.median(direct_times):.2f} s (medians); "
            f"ratio {statistics.median(ratios):.3f}x median, {min(ratios):.3f}-{max(ratios):.3f}x (goal: within 1.05x)"
        )
    finally:
        tear_down(directory, config, env, [INVOKE, "--search-root", str(ROOT)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
