"""How fast `invoke up` launches a cluster: from the command's start until every stub qemu
runs and has greeted on its QMP socket (up's own confirmation included).

Uses the stub qemu from tests/stubs (writes its pid file, greets on QMP, sleeps) and a
private tmux server. For 7 VMs, runs of `invoke up` are interleaved with runs of the
tutorial's vmlaunchall.sh shape (new-session, then send-keys, split-window and
select-layout per VM, one tmux process each), with the panes' login shells as the
tutorial has them and with a plain `bash --noprofile --norc`, and the ratio is taken run
by run. Then 30 and 60 VMs; and tmux through libtmux against kubenet's batched calls,
each from a fresh process: reading a running 7-pane session, and building `ssh-all`'s
session. Targets: 7 VMs at most 0.8x the tutorial's scripts (as the tutorial runs them,
in login shells), 60 VMs under 1 s, and libtmux at run time only where it is not slower
by more than 10 ms. Run: `make bench` (or python bench/launch.py)."""

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
TARGET_RATIO, TARGET_60, LIBTMUX_MARGIN = 0.8, 1.0, 0.010


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


class StubCluster:
    """A cluster of `count` stub VMs, launched by `invoke up --no-wait` as often as asked."""

    def __init__(self, count: int):
        self.count = count
        self.directory = Path(tempfile.mkdtemp(prefix="knb"))
        self.socket = self.directory / "tmux.sock"
        self.config = make_cluster(self.directory, count)
        # the stub's python3 is this one, not a version manager's shim (pyenv's costs 0.1 s a start)
        path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        self.env = {**os.environ, "PATH": path, "KUBENET_TMUX_SOCKET": str(self.socket), "KUBENET_QEMU": str(STUB), "KUBENET_ACCEL": "tcg"}
        self.up()  # the VDE switch is started once per cluster, not per launch: outside the timing
        clean(self.directory, self.socket)

    def up(self) -> float:
        pid_files = [self.directory / ".kubenet" / f"node{i}" / "qemu.pid" for i in range(self.count)]
        start = time.perf_counter()
        subprocess.run([INVOKE, "--search-root", str(ROOT), "up", "--no-wait", "--config", str(self.config)], env=self.env, check=True, capture_output=True)
        while not all(path.exists() for path in pid_files):
            time.sleep(0.002)
        return time.perf_counter() - start

    def timed_up(self) -> float:
        took = self.up()
        clean(self.directory, self.socket)
        return took

    def close(self) -> None:
        clean(self.directory, self.socket, switch=True)
        shutil.rmtree(self.directory, ignore_errors=True)


class Tutorial:
    """The tutorial's vmlaunchall.sh shape, each run on a fresh tmux server. Its panes run the
    user's login shell (tmux's default), whose start-up counts; or a plain `bash --noprofile --norc`."""

    def __init__(self, count: int, login_shells: bool):
        self.count = count
        self.directory = Path(tempfile.mkdtemp(prefix="knt"))
        self.script = self.directory / "launchall.sh"
        conf = self.directory / "tmux.conf"
        conf.write_text("" if login_shells else 'set -g default-command "bash --noprofile --norc"\n')
        lines = ["socket=$1", f"tmux -S $socket -f {conf} new-session -s t -n qemu -d"]
        for vm in range(count):
            lines.append(f"tmux -S $socket send-keys -t t 'cd {self.directory}' C-m")
            lines.append(f"tmux -S $socket send-keys -t t 'vmid={vm}' C-m")
            lines.append(f"tmux -S $socket send-keys -t t 'echo $$ > {self.directory}/vm{vm}.pid; exec sleep 3600' C-m")
            if vm != count - 1:
                lines.append("tmux -S $socket split-window -t t -v")
            lines.append("tmux -S $socket select-layout -t t tiled")
        self.script.write_text("\n".join(lines) + "\n")
        self.runs = 0

    def timed_run(self) -> float:
        socket = str(self.directory / f"tmux{self.runs}.sock")
        self.runs += 1
        start = time.perf_counter()
        done = subprocess.run(["bash", str(self.script), socket], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr[:1500])
        while len(list(self.directory.glob("vm*.pid"))) < self.count:
            time.sleep(0.002)
        took = time.perf_counter() - start
        subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)
        for pid in self.directory.glob("vm*.pid"):
            pid.unlink()
        return took

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


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


def timed_codes(codes: list[str], env: dict, before=lambda: None) -> list[float]:
    """Median seconds of each snippet, run as a fresh process, the snippets interleaved."""
    times: list[list[float]] = [[] for _ in codes]
    for _ in range(RUNS):
        for index, code in enumerate(codes):
            before()
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
            times[index].append(time.perf_counter() - start)
    return [statistics.median(each) for each in times]


def time_reading_a_session(cluster: StubCluster) -> tuple[float, float]:
    """Reading a running 7-pane session from a fresh process, its VM marks too: kubenet's (one
    `tmux list-panes`), or the same query through libtmux's server (its import included)."""
    socket = str(cluster.socket)
    ours = f"from kubenet.run.tmux import Tmux; assert len(Tmux({socket!r}).panes('bench-qemu')) == {cluster.count}"
    theirs = (
        f"import libtmux; from kubenet.run.tmux import PANE_FORMAT; "
        f"assert len(libtmux.Server(socket_path={socket!r}).cmd('list-panes', '-s', '-t', '=bench-qemu', '-F', PANE_FORMAT).stdout) == {cluster.count}"
    )
    cluster.up()
    try:
        return tuple(timed_codes([ours, theirs], cluster.env))
    finally:
        clean(cluster.directory, cluster.socket)


# ssh-all's session of the tutorial's cluster, built from its SessionSpec: in kubenet's batched calls, or one libtmux call at a time.
SPEC = (
    "from pathlib import Path; from kubenet.model.config import build_cluster; from kubenet.run.layout import ssh_session; "
    "spec = ssh_session(build_cluster({{}}, Path('/x/cluster.yaml')), Path('/x/ssh_config')); "
    "spec = spec.__class__(spec.name, tuple(w.__class__(w.name, w.layout, tuple(p.__class__(p.vm, ('sleep', '3600')) for p in w.panes)) for w in spec.windows), spec.attach_window, spec.remain_on_exit, spec.owner); "
)
BATCHED = SPEC + "from kubenet.run.tmux import Tmux, session_groups; Tmux({socket!r}).run_groups(session_groups(spec), 'bench')"
WITH_LIBTMUX = SPEC + (
    "import libtmux, shlex; server = libtmux.Server(socket_path={socket!r}); session = None\n"
    "for window_spec in spec.windows:\n"
    "    first = shlex.join(window_spec.panes[0].command)\n"
    "    if session is None:\n"
    "        session = server.new_session(session_name=spec.name, attach=False, window_name=window_spec.name, window_command=first, x=200, y=60)\n"
    "        session.set_option('@kubenet', spec.owner or '1'); window = session.active_window\n"
    "    else:\n"
    "        window = session.new_window(window_name=window_spec.name, attach=False, window_shell=first)\n"
    "    window.set_option('pane-border-status', 'top'); window.set_option('pane-border-format', ' #{{@kubenet-vm}} ')\n"
    "    window.active_pane.cmd('set-option', '-p', '@kubenet-vm', window_spec.panes[0].vm)\n"
    "    for pane_spec in window_spec.panes[1:]:\n"
    "        pane = window.split(shell=shlex.join(pane_spec.command)); pane.cmd('set-option', '-p', '@kubenet-vm', pane_spec.vm)\n"
    "        window.select_layout(window_spec.layout)\n"
)


def time_building_ssh_all() -> tuple[float, float]:
    directory = Path(tempfile.mkdtemp(prefix="kns"))
    socket = str(directory / "tmux.sock")
    kill = lambda: subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)  # noqa: E731
    try:
        return tuple(timed_codes([BATCHED.format(socket=socket), WITH_LIBTMUX.format(socket=socket)], os.environ, before=kill))
    finally:
        kill()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    print(f"a bare invoke task:        {time_bare_invoke():.3f} s (median of {RUNS}; part of every `invoke up` below)")
    seven, login, plain = StubCluster(7), Tutorial(7, True), Tutorial(7, False)
    try:
        runs = [(seven.timed_up(), login.timed_run(), plain.timed_run()) for _ in range(RUNS)]
        read = time_reading_a_session(seven)
    finally:
        seven.close(), login.close(), plain.close()
    ups, logins, plains = zip(*runs)
    ratio_login = statistics.median(up / run for up, run, _ in runs)
    ratio_plain = statistics.median(up / run for up, _, run in runs)
    print(f"invoke up, 7 stub VMs:     {statistics.median(ups):.3f} s, confirmation included (median of {RUNS}, interleaved with the tutorial's)")
    print(f"tutorial's scripts, 7 VMs: {statistics.median(logins):.3f} s with login shells, {statistics.median(plains):.3f} s with plain bash")
    print(f"invoke up / tutorial:      {ratio_login:.2f}x with login shells, {ratio_plain:.2f}x with plain bash (medians of the run-by-run ratios)")
    more = {}
    for count in (30, 60):
        cluster = StubCluster(count)
        try:
            more[count] = statistics.median(cluster.timed_up() for _ in range(RUNS))
        finally:
            cluster.close()
        print(f"invoke up, {count} stub VMs:    {more[count]:.3f} s (median of {RUNS})")
    built = time_building_ssh_all()
    print(f"reading a 7-pane session, from a fresh process: {read[0]:.3f} s as kubenet reads it (one tmux list-panes), {read[1]:.3f} s through libtmux")
    print(f"building ssh-all's session (7 VMs, 4 windows):  {built[0]:.3f} s batched, {built[1]:.3f} s with libtmux")
    kept = [what for what, (ours, theirs) in (("reading", read), ("building", built)) if theirs > ours + LIBTMUX_MARGIN]
    print(f"libtmux is slower by more than {LIBTMUX_MARGIN * 1000:.0f} ms for: {', '.join(kept) or 'neither'} (kubenet keeps its batched calls there; "
          "it removes its own sessions through libtmux)")
    print(f"target, 7 VMs at most {TARGET_RATIO}x the tutorial's scripts (in login shells): {'met' if ratio_login <= TARGET_RATIO else 'NOT met'}")
    print(f"target, 60 VMs under {TARGET_60} s: {'met' if more[60] < TARGET_60 else 'NOT met'} (each stub is a Python process that must greet on QMP first)")
    return 0 if ratio_login <= TARGET_RATIO and more[60] < TARGET_60 else 1


if __name__ == "__main__":
    sys.exit(main())
