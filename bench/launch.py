"""How fast `invoke up` launches a cluster: from the command's start until every stub qemu runs.

Uses the stub qemu from tests/stubs (records its argv, writes its pid file,
sleeps) and a private tmux server, for 7, 30 and 60 VMs. For 7 VMs it also
times the tutorial's approach (one tmux process per command, keys typed into
each pane's shell) on the same machine, with login shells in the panes and
with a plain `bash --noprofile --norc`; and how long reading a running
session takes with kubenet's one `list-panes` and with libtmux. Targets: 7 VMs
no slower than the tutorial's scripts with plain bash, 60 VMs under 1 s.
Run: `make bench` (or python bench/launch.py)."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Time what users get: Python caches compiled modules unless told not to.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # kubenet itself, for its disk maker

from kubenet.prepare.disk import create_disk  # noqa: E402
INVOKE = str(Path(sys.executable).parent / "invoke")
STUB = ROOT / "tests" / "stubs" / "qemu-sleep"
RUNS = 11


def make_cluster(directory: Path, count: int) -> Path:
    config = directory / "cluster.yaml"
    config.write_text(
        "name: bench\nnetwork: {mode: user, api_address: 192.168.1.250}\n"
        "image: {kind: kernel, kernel: vmlinuz, initrd: initrd.img}\n"
        f"roles:\n  - {{name: node, count: {count}, memory: 128M}}\n"
    )
    (directory / "vmlinuz").touch()
    (directory / "initrd.img").touch()
    for index in range(count):
        vm = directory / ".kubenet" / f"node{index}"
        vm.mkdir(parents=True, exist_ok=True)
        create_disk(vm / "disk.img", "64M", None)  # a real, empty qcow2: `up` checks each disk before launching
        (vm / "cidata.iso").touch()
    return config


def clean(directory: Path, socket: Path, switch: bool = False) -> None:
    subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)
    switch_pid = [directory / ".kubenet" / "vde.pid"] if switch else []
    for pid_file in [*directory.glob(".kubenet/*/qemu.pid"), *switch_pid]:
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)


def time_up(count: int) -> float:
    directory = Path(tempfile.mkdtemp(prefix="knb"))
    socket = directory / "tmux.sock"
    config = make_cluster(directory, count)
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(socket), "KUBENET_QEMU": str(STUB), "KUBENET_ACCEL": "tcg"}
    pid_files = [directory / ".kubenet" / f"node{i}" / "qemu.pid" for i in range(count)]
    try:
        # the VDE switch is started once per cluster, not per launch: start it outside the timing
        subprocess.run([INVOKE, "--search-root", str(ROOT), "up", "--no-wait", "--config", str(config)], env=env, check=True, capture_output=True)
        clean(directory, socket)
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            subprocess.run([INVOKE, "--search-root", str(ROOT), "up", "--no-wait", "--config", str(config)], env=env, check=True, capture_output=True)
            while not all(path.exists() for path in pid_files):
                time.sleep(0.002)
            times.append(time.perf_counter() - start)
            clean(directory, socket)
        return statistics.median(times)
    finally:
        clean(directory, socket, switch=True)
        shutil.rmtree(directory, ignore_errors=True)


def time_tutorial_style(count: int, login_shells: bool) -> float:
    """The tutorial's vmlaunchall.sh shape: new-session, then send-keys/split/select-layout per VM.

    Its panes run the user's login shell, whose start-up (profile, rc files) counts;
    without `login_shells` they run a plain `bash --noprofile --norc` (tmux's default-command).
    """
    directory = Path(tempfile.mkdtemp(prefix="knt"))
    script = directory / "launchall.sh"
    conf = directory / "tmux.conf"
    conf.write_text("" if login_shells else 'set -g default-command "bash --noprofile --norc"\n')
    lines = ['socket=$1', f"tmux -S $socket -f {conf} new-session -s t -n qemu -d"]
    for vm in range(count):
        lines.append(f"tmux -S $socket send-keys -t t 'cd {directory}' C-m")
        lines.append(f"tmux -S $socket send-keys -t t 'vmid={vm}' C-m")
        lines.append(f"tmux -S $socket send-keys -t t 'echo $$ > {directory}/vm{vm}.pid; exec sleep 3600' C-m")
        if vm != count - 1:
            lines.append("tmux -S $socket split-window -t t -v")
        lines.append("tmux -S $socket select-layout -t t tiled")
    script.write_text("\n".join(lines) + "\n")
    times = []
    sockets = [str(directory / f"tmux{run}.sock") for run in range(RUNS)]  # a fresh server each run
    try:
        for socket in sockets:
            start = time.perf_counter()
            done = subprocess.run(["bash", str(script), socket], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[:1500])
            while len(list(directory.glob("vm*.pid"))) < count:
                time.sleep(0.002)
            times.append(time.perf_counter() - start)
            subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)
            for pid in directory.glob("vm*.pid"):
                pid.unlink()
        return statistics.median(times)
    finally:
        for socket in sockets:
            subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


TARGET_60 = 1.0


def time_bare_invoke() -> float:
    directory = Path(tempfile.mkdtemp(prefix="kni"))
    (directory / "tasks.py").write_text("from invoke import task\n\n@task\ndef noop(c):\n    pass\n")
    times = []
    try:
        for _ in range(RUNS):
            start = time.perf_counter()
            subprocess.run([INVOKE, "noop"], cwd=directory, check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def time_reading_a_session(count: int = 7) -> tuple[float, float]:
    """Reading a running session's panes from a fresh process: kubenet's one `list-panes`, or libtmux."""
    directory = Path(tempfile.mkdtemp(prefix="knr"))
    socket = directory / "tmux.sock"
    config = make_cluster(directory, count)
    env = {**os.environ, "KUBENET_TMUX_SOCKET": str(socket), "KUBENET_QEMU": str(STUB), "KUBENET_ACCEL": "tcg"}
    ours = f"from kubenet.tmux import Tmux; assert len(Tmux({str(socket)!r}).panes('bench-qemu')) == {count}"
    theirs = (
        f"import libtmux; session = libtmux.Server(socket_path={str(socket)!r}).sessions.get(session_name='bench-qemu'); "
        f"assert len([(p.pane_id, p.pane_pid, p.cmd('show-options', '-pqv', '@kubenet-vm').stdout) for w in session.windows for p in w.panes]) == {count}"
    )
    try:
        subprocess.run([INVOKE, "--search-root", str(ROOT), "up", "--no-wait", "--config", str(config)], env=env, check=True, capture_output=True)
        results = []
        for code in (ours, theirs):
            times = []
            for _ in range(RUNS):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
                times.append(time.perf_counter() - start)
            results.append(statistics.median(times))
        return results[0], results[1]
    finally:
        clean(directory, socket, switch=True)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    print(f"a bare invoke task:            {time_bare_invoke():.3f} s (median of {RUNS}; part of every number below)")
    login = time_tutorial_style(7, login_shells=True)
    plain = time_tutorial_style(7, login_shells=False)
    print(f"tutorial's scripts, 7 VMs:     {login:.3f} s with login shells, {plain:.3f} s with plain bash (one tmux process per command)")
    results = {count: time_up(count) for count in (7, 30, 60)}
    for count, seconds in results.items():
        print(f"invoke up, {count:2d} stub VMs:        {seconds:.3f} s (median of {RUNS})")
    print(f"invoke up / tutorial with plain bash, 7 VMs: {results[7] / plain:.2f}x")
    ours, theirs = time_reading_a_session()
    print(f"reading a 7-pane session from a fresh process: {ours:.3f} s with one list-panes, {theirs:.3f} s with libtmux")
    ok = results[7] <= plain and results[60] < TARGET_60
    print(f"targets (7 VMs no slower than the tutorial with plain bash, 60 under {TARGET_60} s):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
