"""The VDE cables that make one Ethernet segment of several hosts' switches.

A cable is VDE's own: `vde_plug <this host's switch> = ssh <host> kubenet plug`, where
kubenet there plugs a `vde_plug` into that host's switch, and the two plugs pass the
frames over the SSH connection (a connection of its own, not the host's shared one).
Each cable has a supervisor, a small process `up` starts and `down` stops (found by its
pid file and its arguments, never by name): it makes the cable again whenever it drops,
after a backoff that grows while the host stays away, and writes what it sees to
`cable-<host>.json` in state_dir, which `ls` reads.

`python -m kubenet.hosts.cable CLUSTER_FILE HOST PID_FILE` runs a supervisor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ..model.cluster import Cluster, RemoteHost
from ..plumbing.process import kill_group

PLUGGED = "kubenet: cable plugged in"  # what the far end says once its plug is in its switch
FIRST_DELAY, MAX_DELAY = 0.5, 10.0  # seconds between attempts: doubling up to the most
STEADY_SECONDS = 10.0  # a cable that held this long starts the backoff afresh


def pid_file(cluster: Cluster, host: RemoteHost) -> Path:
    return cluster.state_dir / f"cable-{host.name}.pid"


def state_file(cluster: Cluster, host: RemoteHost) -> Path:
    return cluster.state_dir / f"cable-{host.name}.json"


def log_file(cluster: Cluster, host: RemoteHost) -> Path:
    return cluster.state_dir / f"cable-{host.name}.log"


def cable_argv(cluster: Cluster, host: RemoteHost) -> list[str]:
    from ..model.paths import vde_socket_path
    from .remote import host_ssh_argv, remote_command

    return ["vde_plug", str(vde_socket_path(cluster)), "=", *host_ssh_argv(cluster, host, remote_command(cluster, host, "plug"), shared=False)]


def supervisor_argv(cluster: Cluster, host: RemoteHost) -> list[str]:
    return [sys.executable, "-m", "kubenet.hosts.cable", str(cluster.source.absolute()), host.name, str(pid_file(cluster, host))]


def supervisor_pid(cluster: Cluster, host: RemoteHost) -> int | None:
    from ..plumbing.process import own_pid

    return own_pid(pid_file(cluster, host), str(pid_file(cluster, host)))


def backoff(attempt: int) -> float:
    """Seconds before attempt `attempt` (1 is the first retry)."""
    return min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, attempt - 1))


# ---- commanded by up, down and ls ----------------------------------------------------------


def start(cluster: Cluster, host: RemoteHost, say: Callable[[str], None]) -> int:
    """The host's cable supervisor, started unless it runs; its pid."""
    from ..plumbing.fsutil import locked
    from ..store.statedir import ensure_state

    ensure_state(cluster)
    with locked(cluster.state_dir / f"cable-{host.name}.lock"):
        pid = supervisor_pid(cluster, host)
        if pid:
            return pid
        state_file(cluster, host).unlink(missing_ok=True)
        with open(log_file(cluster, host), "ab") as log:
            process = subprocess.Popen(supervisor_argv(cluster, host), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True, cwd="/")  # fmt: skip
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and supervisor_pid(cluster, host) != process.pid:
            if process.poll() is not None:
                break
            time.sleep(0.02)
        say(f"kubenet: cable to {host.name}: started (supervisor pid {process.pid})")
        return process.pid


def stop(cluster: Cluster, host: RemoteHost, say: Callable[[str], None]) -> bool:
    """Stop the host's cable and its supervisor; whether one ran."""
    from ..plumbing.process import kill, wait_for_exit

    pid = supervisor_pid(cluster, host)
    if pid is None:
        return False
    kill(pid, signal.SIGTERM)
    if not wait_for_exit(pid, 5):
        kill(pid, signal.SIGKILL)  # provably ours: its pid file and its arguments
        stop_plug(cluster, read_state(cluster, host).get("pid"))
    pid_file(cluster, host).unlink(missing_ok=True)
    state_file(cluster, host).unlink(missing_ok=True)
    say(f"kubenet: cable to {host.name}: stopped")
    return True


def stop_plug(cluster: Cluster, pid: object) -> None:
    """A cable its supervisor left behind: its plug's group, if the plug is provably this cluster's."""
    from ..model.paths import vde_socket_path
    from ..plumbing.process import is_own_process

    if isinstance(pid, int) and is_own_process(pid, str(vde_socket_path(cluster)), lambda: False):
        kill_group(pid)


def read_state(cluster: Cluster, host: RemoteHost) -> dict:
    """What the supervisor last wrote, {} if nothing (or nothing readable)."""
    try:
        state = json.loads(state_file(cluster, host).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def describe(cluster: Cluster, host: RemoteHost) -> str:
    """The cable's state in words, for `ls`."""
    if supervisor_pid(cluster, host) is None:
        return "not running (`invoke up` starts it)"
    state = read_state(cluster, host)
    if state.get("state") == "connected":
        return f"connected (pid {state.get('pid')}, since {state.get('since')})"
    if state.get("state") == "reconnecting":
        return f"down, reconnecting (attempt {state.get('attempt')}; last: {state.get('reason')})"
    return "connecting"


# ---- the supervisor ------------------------------------------------------------------------


class Supervisor:
    """Keeps one cable plugged in, until told to stop (SIGTERM)."""

    def __init__(self, cluster: Cluster, host: RemoteHost):
        self.cluster, self.host = cluster, host
        self.stopping = threading.Event()
        self.cable: subprocess.Popen | None = None

    def write(self, **state) -> None:
        from ..plumbing.fsutil import write_atomic

        write_atomic(state_file(self.cluster, self.host), (json.dumps(state) + "\n").encode())

    def log(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)

    def stop(self, *_) -> None:
        self.stopping.set()
        if self.cable is not None and self.cable.poll() is None:
            kill_group(self.cable.pid)  # the plug and its ssh: a group of their own

    def once(self, attempt: int) -> str:
        """Plug the cable in and keep it until it drops; why it dropped."""
        from ..run.vde import ensure_switch

        ensure_switch(self.cluster)
        # POSIXLY_CORRECT: vde_plug's getopt would otherwise read ssh's options after `=` as its own
        self.cable = subprocess.Popen(cable_argv(self.cluster, self.host), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, process_group=0, env={**os.environ, "POSIXLY_CORRECT": "1"})  # fmt: skip
        self.write(state="connecting", attempt=attempt, pid=self.cable.pid)
        last = ""
        for raw in self.cable.stderr:
            line = raw.decode(errors="replace").strip()
            if line.startswith(PLUGGED):
                self.write(state="connected", pid=self.cable.pid, since=time.strftime("%H:%M:%S"))
                self.log(f"connected to {self.host.name} (plug pid {self.cable.pid})")
            elif line:
                last = line
        code = self.cable.wait()
        return last or f"the cable ended (exit code {code})"

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        attempt = 0
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                reason = self.once(attempt)
            except Exception as error:  # a switch that cannot start, say: reported, tried again
                reason = str(error)
            if self.stopping.is_set():
                break
            attempt = 1 if time.monotonic() - began >= STEADY_SECONDS else attempt + 1
            delay = backoff(attempt)
            self.write(state="reconnecting", attempt=attempt, reason=reason, retry_in=delay)
            self.log(f"cable to {self.host.name} dropped: {reason}; again in {delay:g} s")
            self.stopping.wait(delay)
        self.log("stopped")


def main(argv: list[str]) -> None:
    from ..model.config import load_cluster
    from ..plumbing.fsutil import write_atomic

    source, name, pid_path = argv
    cluster = load_cluster(Path(source))
    host = cluster.remote_host(name)
    if host is None or Path(pid_path) != pid_file(cluster, host):
        sys.exit(f"kubenet: cable: {name!r} is not a host of {source}")
    write_atomic(Path(pid_path), f"{os.getpid()}\n".encode())
    Supervisor(cluster, host).run()


if __name__ == "__main__":
    main(sys.argv[1:])


def plug_here(cluster: Cluster, say: Callable[[str], None]) -> None:
    """`invoke plug`, run by a cable from the controlling host: stdin and stdout become this
    host's switch port (the switch started if needed)."""
    from ..model.paths import vde_socket_path
    from ..plumbing.process import replace_process
    from ..run.vde import ensure_switch

    ensure_switch(cluster)
    say(f"{PLUGGED} at {cluster.here}")
    replace_process(["vde_plug", str(vde_socket_path(cluster))], "install vde2 (`apt install vde2`, `brew install vde`)")
